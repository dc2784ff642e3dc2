//! A list of strings that is also a hash index from each string to its position: the vocab (token
//! text ↔ id) and the BPE merges (`"left right"` → rank).
//!
//! Why not a `HashMap<String, u32>` next to a `Vec<String>`: that allocates every one of a 150k
//! vocab's texts twice and every merge once more, and building those maps was most of the
//! tokenizer's load time (Qwen2.5: ~200 ms of a 0.32 s load). Here the strings live in one buffer
//! and the index holds only positions, so building it is one copy of the text and one probe per
//! string.

use super::fxhash::FxHasher;
use std::hash::Hasher;

/// Strings in insertion order, searchable by content. Equal strings may be pushed more than once;
/// [`StrTable::find`] then returns the first position, as llama.cpp keeps the first rank of a
/// repeated merge.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrTable {
    /// Every string, concatenated.
    text: String,
    /// `ends[i]`: where string `i` ends in `text` (it starts where string `i - 1` ends).
    ends: Vec<usize>,
    /// Open addressing with linear probing, kept at most 3/4 full: 0 for an empty slot, else the
    /// string's hash tag in the high 32 bits and its position + 1 in the low 32 bits.
    slots: Vec<u64>,
}

/// The hash of `s`; its top bits pick the slot, its low 32 bits are the tag compared before the
/// text.
fn hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

impl StrTable {
    /// An empty table with room for `count` strings of `bytes` bytes in all.
    pub fn with_capacity(count: usize, bytes: usize) -> StrTable {
        let mut table = StrTable {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(count),
            slots: Vec::new(),
        };
        table.resize_slots(count);
        table
    }

    /// Number of strings pushed.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// String `i`, if there is one.
    #[inline]
    pub fn get(&self, i: u32) -> Option<&str> {
        let i = i as usize;
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    /// All strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len() as u32).filter_map(|i| self.get(i))
    }

    /// Appends `s` as string number `len()`. Returns the position of an earlier equal string if
    /// there is one (`s` is stored all the same, but `find` keeps answering the earlier one).
    ///
    /// Positions are u32 (token ids); a table never holds more than `u32::MAX - 1` strings, which
    /// callers check before pushing.
    #[cfg(test)]
    pub fn push(&mut self, s: &str) -> Option<u32> {
        self.extend(&[s]).map(|(earlier, _)| earlier)
    }

    /// Appends every string of `strs` in order, as `push` would one after another, and returns
    /// the first that repeats an earlier string, as (earlier position, its position).
    ///
    /// For a whole vocab at once: a 262k-entry index is far bigger than the caches, so inserting
    /// waits on a cache miss per string unless the slot is fetched ahead (Gemma 3's vocab: most
    /// of the tokenizer's build time went to those misses).
    pub fn extend(&mut self, strs: &[&str]) -> Option<(u32, u32)> {
        /// How many strings ahead the slot of a string is prefetched: enough to cover a miss to
        /// memory with the work of inserting the strings in between.
        const PREFETCH_AHEAD: usize = 16;
        let total = self.len() + strs.len();
        if (total + 1) * 4 > self.slots.len() * 3 {
            self.resize_slots(total * 2);
        }
        let first = self.len();
        let hashes: Vec<u64> = strs.iter().map(|s| hash(s)).collect();
        for s in strs {
            self.text.push_str(s);
            self.ends.push(self.text.len());
        }
        let mut first_repeat = None;
        for (i, &h) in hashes.iter().enumerate() {
            if let Some(&ahead) = hashes.get(i + PREFETCH_AHEAD) {
                self.prefetch_slot(ahead);
            }
            let position = (first + i) as u32;
            if let Some(earlier) = self.insert(position, h) {
                first_repeat.get_or_insert((earlier, position));
            }
        }
        first_repeat
    }

    /// Indexes string `position` (already stored), whose hash is `h`, unless an earlier equal
    /// string is indexed: then returns that one's position.
    #[inline]
    fn insert(&mut self, position: u32, h: u64) -> Option<u32> {
        match self.probe(h, |earlier| self.get(earlier) == self.get(position)) {
            Ok(earlier) => Some(earlier),
            Err(empty) => {
                self.slots[empty] = (h << 32) | (u64::from(position) + 1);
                None
            }
        }
    }

    /// Walks the probe sequence of hash `h`: `Ok` with the first indexed position whose tag
    /// matches and that `is_match` accepts, or `Err` with the empty slot where the walk ended
    /// (there always is one: the table is at most 3/4 full).
    #[inline]
    fn probe(&self, h: u64, is_match: impl Fn(u32) -> bool) -> Result<u32, usize> {
        let tag = h << 32;
        let mask = self.slots.len() - 1;
        let mut slot = self.first_slot(h);
        loop {
            let entry = self.slots[slot];
            if entry == 0 {
                return Err(slot);
            }
            if entry & !0xFFFF_FFFF == tag && is_match((entry as u32) - 1) {
                return Ok((entry as u32) - 1);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Asks the CPU to start loading the slot where the probe for hash `h` begins.
    #[inline]
    fn prefetch_slot(&self, h: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let slot: *const u64 = &self.slots[self.first_slot(h)];
            // SAFETY: SSE is part of x86_64; a prefetch is a hint that never faults and changes
            // nothing the program can observe, and the address is a live element anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(slot.cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = h;
    }

    /// The first position holding exactly `s`.
    #[inline]
    pub fn find(&self, s: &str) -> Option<u32> {
        self.probe(hash(s), |position| self.get(position) == Some(s))
            .ok()
    }

    /// The slot where the probe for hash `h` starts: the multiply-based hash mixes its high bits
    /// best, so those pick the slot.
    #[inline]
    fn first_slot(&self, h: u64) -> usize {
        let bits = self.slots.len().trailing_zeros();
        // `slots.len()` is a power of two ≥ 8, so the shift is in 1..=61.
        (h >> (64 - bits)) as usize
    }

    /// Makes room for `count` strings at most 3/4 full and re-indexes what is there (first
    /// positions stay first because strings are re-inserted in order).
    fn resize_slots(&mut self, count: usize) {
        let len = (count.max(4) * 4 / 3 + 1).next_power_of_two();
        self.slots = vec![0; len];
        for position in 0..self.len() as u32 {
            let h = hash(self.get(position).unwrap_or_default());
            let _ = self.insert(position, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Against a HashMap that keeps the first position of each string: every string is found
        /// at its first position, strings never pushed are not found, and `get` returns what was
        /// pushed, across the resizes a table started too small goes through.
        #[test]
        fn matches_a_first_position_map(
            strings in proptest::collection::vec("[a-c ]{0,4}|\\PC{0,3}", 0..300),
            probes in proptest::collection::vec("[a-d ]{0,4}", 0..50),
        ) {
            let mut table = StrTable::with_capacity(2, 4);
            let mut first: HashMap<&str, u32> = HashMap::new();
            // Pushed one by one, then in chunks of up to 40 (`extend`, with its prefetching).
            let half = strings.len() / 2;
            for (i, s) in strings[..half].iter().enumerate() {
                let earlier = table.push(s);
                prop_assert_eq!(earlier, first.get(s.as_str()).copied());
                first.entry(s.as_str()).or_insert(i as u32);
            }
            let mut position = half;
            for chunk in strings[half..].chunks(40) {
                let strs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let mut expected_repeat = None;
                for s in chunk {
                    if let Some(&earlier) = first.get(s.as_str()) {
                        expected_repeat.get_or_insert((earlier, position as u32));
                    }
                    first.entry(s.as_str()).or_insert(position as u32);
                    position += 1;
                }
                prop_assert_eq!(table.extend(&strs), expected_repeat);
            }
            prop_assert_eq!(table.len(), strings.len());
            for (i, s) in strings.iter().enumerate() {
                prop_assert_eq!(table.get(i as u32), Some(s.as_str()));
                prop_assert_eq!(table.find(s), first.get(s.as_str()).copied());
            }
            for p in &probes {
                prop_assert_eq!(table.find(p), first.get(p.as_str()).copied());
            }
            prop_assert_eq!(table.get(strings.len() as u32), None);
        }
    }
}
