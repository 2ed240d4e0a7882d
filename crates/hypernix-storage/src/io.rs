//! Reads, writes, zeroing, flushes and allocation maps of volumes.
//!
//! A write into a hole allocates: 1. pick a slot on the first tier with room, starting at the
//! default level; 2. write the whole extent there; 3. sync the tier file; 4. commit the map.
//! A whole-extent zero write, TRIM or WRITE_ZEROES frees the extent (commit, then punch).

use std::sync::atomic::Ordering;

use crate::counters::Counters;
use crate::error::StorageError;
use crate::map::Op;
use crate::store::{Run, State, Store};

/// Splits `[offset, offset+len)` into (extent index, offset in extent, length) pieces.
fn pieces(g: u64, offset: u64, len: u64) -> impl Iterator<Item = (u64, u64, u64)> {
    let end = offset + len;
    let mut at = offset;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let idx = at / g;
            let off = at % g;
            let n = (g - off).min(end - at);
            at += n;
            (idx, off, n)
        })
    })
}

impl Store {
    /// Looks up the volume id, checking `[offset, offset+len)` is inside it.
    fn range(&self, st: &State, name: &str, offset: u64, len: u64) -> Result<u64, StorageError> {
        let v = st
            .volumes
            .get(name)
            .ok_or_else(|| StorageError::NoVolume(name.into()))?;
        match offset.checked_add(len) {
            Some(end) if end <= v.size => Ok(v.id),
            _ => Err(StorageError::OutOfRange {
                volume: name.into(),
                offset,
                end: offset.saturating_add(len),
                size: v.size,
            }),
        }
    }

    /// Reads `buf.len()` bytes of volume `name` at `offset`; holes read as zeros.
    pub fn read(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let st = self.shared();
        let id = self.range(&st, name, offset, buf.len() as u64)?;
        self.record(id, offset, buf.len() as u64, false, None);
        let cacheable = self.cache.is_some() && self.rules().caches(name);
        let mut at = 0usize;
        for (idx, off, n) in pieces(self.granularity, offset, buf.len() as u64) {
            let part = &mut buf[at..at + n as usize];
            at += n as usize;
            let Some(&(t, slot)) = st.extents.get(&(id, idx)) else {
                part.fill(0);
                continue;
            };
            if !(cacheable && self.read_cached(&st, (id, idx), (t, slot), off, part)?) {
                st.tier(t).data.read(slot, off, part)?;
                Counters::bump(&self.counters.served, st.index(t));
            }
        }
        Ok(())
    }

    /// Serves a read of a mapped extent through the memory cache (see [`crate::memcache`]);
    /// returns false when the caller must read the tier itself.
    fn read_cached(
        &self,
        st: &State,
        key: (u64, u64),
        (t, slot): (u8, u64),
        off: u64,
        part: &mut [u8],
    ) -> Result<bool, StorageError> {
        let Some(cache) = &self.cache else {
            return Ok(false);
        };
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = {
            let heat = self.heat.lock().unwrap_or_else(|e| e.into_inner());
            cache.access(key, &heat, self.now())
        };
        if outcome.hit
            && let Some(copy) = cache.copy(&key)
        {
            part.copy_from_slice(&copy[off as usize..off as usize + part.len()]);
            Counters::bump(&self.counters.served, cache.tier);
            return Ok(true);
        }
        if outcome.hit {
            // Admitted earlier but its copy never arrived (the tier read failed): start over.
            cache.drop_key(&key);
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        if !outcome.admitted {
            return Ok(false);
        }
        let mut whole = vec![0u8; self.granularity as usize].into_boxed_slice();
        st.tier(t).data.read(slot, 0, &mut whole)?;
        part.copy_from_slice(&whole[off as usize..off as usize + part.len()]);
        cache.insert(key, whole);
        Counters::bump(&self.counters.served, st.index(t));
        Ok(true)
    }

    /// Tells the memory cache that `data` was written at `off` in extent `key`.
    pub(crate) fn cache_written(&self, key: (u64, u64), off: u64, data: &[u8]) {
        if let Some(cache) = &self.cache {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.written(key, off, data);
        }
    }

    /// Drops extent `key` from the memory cache.
    pub(crate) fn cache_drop(&self, key: (u64, u64)) {
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drop_key(&key);
        }
    }

    /// Writes `data` to volume `name` at `offset`; with `fua` it is durable on return.
    pub fn write(
        &self,
        name: &str,
        offset: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<(), StorageError> {
        if let Some(id) = self.write_in_place(name, offset, data, fua)? {
            self.record(id, offset, data.len() as u64, true, Some(data));
            return Ok(());
        }
        let mut st = self.lock();
        let id = self.range(&st, name, offset, data.len() as u64)?;
        let g = self.granularity;
        let mut at = 0usize;
        let mut touched = Vec::new();
        for (idx, off, n) in pieces(g, offset, data.len() as u64) {
            let part = &data[at..at + n as usize];
            at += n as usize;
            let zero = part.iter().all(|&b| b == 0);
            match st.extents.get(&(id, idx)).copied() {
                Some(_) if zero && n == g => self.free_one(&mut st, name, (id, idx))?,
                Some((t, slot)) => {
                    st.tier(t).data.write(slot, off, part)?;
                    self.cache_written((id, idx), off, part);
                    touched.push(t);
                }
                None if zero => {}
                None => self.allocate(&mut st, name, (id, idx), off, part)?,
            }
        }
        if fua {
            touched.dedup();
            for t in touched {
                st.tier(t).data.sync()?;
            }
        }
        drop(st);
        self.record(id, offset, data.len() as u64, true, Some(data));
        Ok(())
    }

    /// The common case, under shared access: every extent touched is allocated and stays so
    /// (no whole-extent zeros). Returns the volume id, or `None` when the map must change.
    fn write_in_place(
        &self,
        name: &str,
        offset: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<Option<u64>, StorageError> {
        let st = self.shared();
        let id = self.range(&st, name, offset, data.len() as u64)?;
        let g = self.granularity;
        let mut targets = Vec::new();
        let mut at = 0usize;
        for (idx, off, n) in pieces(g, offset, data.len() as u64) {
            let part = &data[at..at + n as usize];
            at += n as usize;
            match st.extents.get(&(id, idx)) {
                Some(_) if n == g && part.iter().all(|&b| b == 0) => return Ok(None),
                Some(&(t, slot)) => targets.push((idx, t, slot, off, part)),
                None => return Ok(None),
            }
        }
        for &(idx, t, slot, off, part) in &targets {
            st.tier(t).data.write(slot, off, part)?;
            self.cache_written((id, idx), off, part);
        }
        if fua {
            let mut tiers: Vec<u8> = targets.iter().map(|x| x.1).collect();
            tiers.dedup();
            for t in tiers {
                st.tier(t).data.sync()?;
            }
        }
        Ok(Some(id))
    }

    /// Zeroes `len` bytes of volume `name` at `offset` (TRIM and WRITE_ZEROES): whole
    /// extents become holes, partial ones are overwritten with zeros.
    pub fn zero(&self, name: &str, offset: u64, len: u64, fua: bool) -> Result<(), StorageError> {
        let mut st = self.lock();
        let id = self.range(&st, name, offset, len)?;
        let g = self.granularity;
        for (idx, off, n) in pieces(g, offset, len) {
            match st.extents.get(&(id, idx)).copied() {
                None => {}
                Some(_) if n == g => self.free_one(&mut st, name, (id, idx))?,
                Some((t, slot)) => {
                    let zeros = vec![0u8; n as usize];
                    let tier = &st.tier(t).data;
                    tier.write(slot, off, &zeros)?;
                    self.cache_written((id, idx), off, &zeros);
                    if fua {
                        tier.sync()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        let st = self.shared();
        for t in &st.tiers {
            t.data.sync()?;
        }
        if self.durable && self.counters.due() {
            self.save_counters()?;
        }
        Ok(())
    }

    /// Allocation runs of `[offset, offset+len)` of volume `name`, merged, in order.
    pub fn block_status(
        &self,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<Run>, StorageError> {
        let st = self.lock();
        let id = self.range(&st, name, offset, len)?;
        let mut runs: Vec<Run> = Vec::new();
        for (idx, _, n) in pieces(self.granularity, offset, len) {
            let allocated = st.extents.contains_key(&(id, idx));
            match runs.last_mut() {
                Some(r) if r.allocated == allocated => r.len += n,
                _ => runs.push(Run { len: n, allocated }),
            }
        }
        Ok(runs)
    }

    /// Frees one extent: commit, then punch its slot.
    fn free_one(&self, st: &mut State, _name: &str, key: (u64, u64)) -> Result<(), StorageError> {
        let Some((t, slot)) = st.extents.get(&key).copied() else {
            return Ok(());
        };
        self.map
            .commit(&[Op::DelExtent(key), Op::AddFree(t, slot)])?;
        st.extents.remove(&key);
        self.cache_drop(key);
        self.heat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(key);
        let i = st.tiers.iter().position(|x| x.id == t).unwrap_or(0);
        st.tiers[i].free.insert(slot);
        st.tiers[i].data.discard(slot)
    }

    /// Tier indexes in allocation order for volume `name`: its start level (the default
    /// level without a classification, see [`crate::classify`]) and slower, then faster
    /// ones; only the levels its pin or classification allows.
    pub(crate) fn allocation_order(&self, st: &State, name: &str) -> Vec<usize> {
        let rules = self.rules();
        let durable = |i: usize| !self.durable || st.tiers[i].data.durable();
        let levels: Vec<u32> = (0..st.tiers.len())
            .filter(|&i| durable(i))
            .map(|i| st.tiers[i].spec.level)
            .collect();
        let start = rules.start_level(name, &levels, self.default_level);
        let usable = |i: &usize| durable(*i) && rules.allows(name, st.tiers[*i].spec.level);
        let n = st.tiers.len();
        let mut order: Vec<usize> = (0..n)
            .filter(|&i| st.tiers[i].spec.level >= start)
            .filter(usable)
            .collect();
        order.extend(
            (0..n)
                .rev()
                .filter(|&i| st.tiers[i].spec.level < start)
                .filter(usable),
        );
        order
    }

    /// Takes a free slot on tier `i`, returning it and the map op that records the taking.
    pub(crate) fn take_slot(st: &mut State, i: usize) -> Option<(u64, Op)> {
        let t = &mut st.tiers[i];
        if let Some(slot) = t.free.pop_first() {
            return Some((slot, Op::TakeFree(t.id, slot)));
        }
        (t.high_water < t.slots).then(|| {
            t.high_water += 1;
            (
                t.high_water - 1,
                Op::PutTier(t.spec.name.clone(), t.id, t.high_water),
            )
        })
    }

    /// Gives back a slot taken by [`Store::take_slot`] whose commit failed.
    pub(crate) fn untake_slot(st: &mut State, i: usize, slot: u64) {
        let t = &mut st.tiers[i];
        if slot + 1 == t.high_water {
            t.high_water -= 1;
        } else {
            t.free.insert(slot);
        }
    }

    /// Allocates extent `key` with `part` at `off` and zeros elsewhere (copy-then-switch).
    fn allocate(
        &self,
        st: &mut State,
        name: &str,
        key: (u64, u64),
        off: u64,
        part: &[u8],
    ) -> Result<(), StorageError> {
        let full = || StorageError::Full {
            volume: name.into(),
            extent: key.1,
        };
        let (i, slot, op) = self
            .allocation_order(st, name)
            .into_iter()
            .find_map(|i| Store::take_slot(st, i).map(|(s, op)| (i, s, op)))
            .ok_or_else(full)?;
        let mut buf = vec![0u8; self.granularity as usize];
        buf[off as usize..off as usize + part.len()].copy_from_slice(part);
        let tier = &st.tiers[i];
        let id = tier.id;
        let result = tier
            .data
            .write(slot, 0, &buf)
            .and_then(|()| tier.data.sync())
            .and_then(|()| self.map.commit(&[op, Op::PutExtent(key, (id, slot))]));
        match result {
            Ok(()) => {
                st.extents.insert(key, (id, slot));
                Ok(())
            }
            Err(e) => {
                Store::untake_slot(st, i, slot);
                Err(e)
            }
        }
    }
}
