//! Context novelty: how many of the recent quantized-value sequences ending at this point
//! have never been seen before in this series.
//!
//! 1. The value is quantized to one of `levels` levels of the range seen so far.
//! 2. For each order `k` in `1..=orders`, the last `k` levels form a context; its hash picks
//!    a slot in a fixed table of saturating counters.
//! 3. A context whose counter is zero is novel. The novelty is the weighted share of novel
//!    orders (low orders weigh more: a value level never seen is more telling than a new
//!    long sequence). The counters are then incremented.
//!
//! Memory is the fixed table plus a short history; collisions only make the detector
//! quieter (a novel context may look seen), never louder.

/// The largest context order.
pub(crate) const MAX_ORDER: usize = 8;
/// Slots in the context table (a power of two).
pub(crate) const SLOTS: usize = 1 << 13;

/// The context table of one series.
pub(crate) struct Contexts {
    table: Box<[u8; SLOTS]>,
    history: [u8; MAX_ORDER],
    seen: usize,
    orders: usize,
    weights: [f64; MAX_ORDER],
}

impl Contexts {
    /// A table for contexts of orders `1..=orders` (clamped to `MAX_ORDER`).
    pub(crate) fn new(orders: usize) -> Self {
        let orders = orders.clamp(1, MAX_ORDER);
        let mut weights = [0.0; MAX_ORDER];
        let total: f64 = (1..=orders).map(|k| 1.0 / k as f64).sum();
        for (k, w) in weights.iter_mut().enumerate().take(orders) {
            *w = 1.0 / (k + 1) as f64 / total;
        }
        Contexts {
            table: Box::new([0; SLOTS]),
            history: [0; MAX_ORDER],
            seen: 0,
            orders,
            weights,
        }
    }

    /// Bytes held, heap included.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + SLOTS
    }

    /// Pushes `level`; returns the novelty of the contexts it ends, in `[0, 1]`.
    pub(crate) fn push(&mut self, level: u8) -> f64 {
        self.history.copy_within(1.., 0);
        self.history[MAX_ORDER - 1] = level;
        self.seen = (self.seen + 1).min(MAX_ORDER);
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut novelty = 0.0;
        let mut weight_seen = 0.0;
        for k in 0..self.orders.min(self.seen) {
            hash ^= u64::from(self.history[MAX_ORDER - 1 - k]) + 1;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            let mixed = (hash ^ (k as u64) << 56).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let slot = (mixed >> (64 - SLOTS.trailing_zeros())) as usize;
            let count = &mut self.table[slot];
            if *count == 0 {
                novelty += self.weights[k];
            }
            weight_seen += self.weights[k];
            *count = count.saturating_add(1);
        }
        if weight_seen > 0.0 {
            novelty / weight_seen
        } else {
            0.0
        }
    }
}
