//! Chunk sketches for similarity detection.
//!
//! 1. A gear rolling hash runs over the chunk; positions where its low 6 bits are zero
//!    (one in 64, chosen by content, so an insertion moves them along with the data) give
//!    a feature: the hash value there, a function of the 64 bytes before it.
//! 2. Each of [`SKETCH`] seeded mixes of the features keeps its minimum: a MinHash sketch.
//!    The fraction of equal positions between two sketches estimates the Jaccard similarity
//!    of their feature sets.
//! 3. Groups of four minimums hash into [`SUPER`] super-features, the keys of the index
//!    lookup: two chunks that share one are candidates, then compared by sketch.

/// Minimums per sketch.
pub const SKETCH: usize = 12;
/// Super-features per sketch.
pub const SUPER: usize = SKETCH / 4;

/// A chunk's MinHash sketch.
pub type Sketch = [u64; SKETCH];

/// splitmix64's finaliser: a fast, well-mixing 64-bit permutation.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The gear table: one random-looking word per byte value.
const GEAR: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = mix(0x5eed_0000 + i as u64);
        i += 1;
    }
    table
};

/// The sketch of `data`; all `u64::MAX` when it has no feature (very short data).
pub fn sketch(data: &[u8]) -> Sketch {
    let mut mins = [u64::MAX; SKETCH];
    let mut h: u64 = 0;
    for &b in data {
        h = (h << 1).wrapping_add(GEAR[usize::from(b)]);
        if h & 0x3f == 0 {
            for (i, m) in mins.iter_mut().enumerate() {
                let v = mix(h ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                if v < *m {
                    *m = v;
                }
            }
        }
    }
    mins
}

/// The super-features of a sketch.
pub fn super_features(sketch: &Sketch) -> [u64; SUPER] {
    let mut out = [0u64; SUPER];
    for (j, group) in sketch.chunks_exact(4).enumerate() {
        out[j] = group.iter().fold(mix(j as u64 + 1), |acc, &v| mix(acc ^ v));
    }
    out
}

/// Estimated similarity of two sketches, 0 to 1.
pub fn similarity(a: &Sketch, b: &Sketch) -> f64 {
    let equal = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x == y && **x != u64::MAX)
        .count();
    equal as f64 / SKETCH as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        (0..n as u64).map(|i| mix(seed ^ i) as u8).collect()
    }

    #[test]
    fn identical_data_is_fully_similar() {
        let a = noise(1, 256 << 10);
        assert_eq!(similarity(&sketch(&a), &sketch(&a)), 1.0);
    }

    #[test]
    fn unrelated_data_is_not_similar() {
        let (a, b) = (noise(1, 256 << 10), noise(2, 256 << 10));
        assert!(similarity(&sketch(&a), &sketch(&b)) < 0.3);
    }

    #[test]
    fn a_few_edits_keep_data_similar() {
        let a = noise(3, 256 << 10);
        let mut b = a.clone();
        for i in (0..b.len()).step_by(50_000) {
            b[i] ^= 0xff;
        }
        b.insert(1000, 7);
        let (sa, sb) = (sketch(&a), sketch(&b));
        assert!(similarity(&sa, &sb) >= 0.7, "{}", similarity(&sa, &sb));
        assert!(
            super_features(&sa)
                .iter()
                .zip(super_features(&sb))
                .any(|(x, y)| *x == y)
        );
    }
}
