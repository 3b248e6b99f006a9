//! A fast hasher for the engine's maps keyed by catalog identifiers (SKUs, locations, channel
//! SKUs). The engine hashes every key of every batch many times; the standard SipHash guards
//! against keys chosen to collide, which these need not: only the catalog defines them (an event
//! naming an unknown SKU or location is refused before it reaches the log).

use std::hash::{BuildHasherDefault, Hasher};

/// Multiplies and rotates the key in 8-byte words; `finish` mixes the result so that its low
/// bits (which pick a map's bucket) depend on every byte.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

/// A `HashMap` hasher builder for [`KeyHasher`].
pub type KeyHash = BuildHasherDefault<KeyHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// Keys that differ only in a digit or two spread evenly over a map's buckets, by their low
    /// bits (the bucket) and their top bits (hashbrown's tag).
    #[test]
    fn similar_keys_spread_over_buckets() {
        let build = KeyHash::default();
        for (shift, name) in [(0u32, "low"), (57, "top")] {
            let mut buckets = vec![0u32; 128];
            for i in 0..128_000 {
                let h = build.hash_one(format!("SKU-{i:06}"));
                buckets[((h >> shift) & 127) as usize] += 1;
            }
            let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
            assert!(
                *min > 850 && *max < 1150,
                "{name} bits: {min}..{max} per bucket, 1000 expected"
            );
        }
    }

    #[test]
    fn equal_keys_hash_equal_and_tuples_differ_by_order() {
        let build = KeyHash::default();
        assert_eq!(build.hash_one("MUG"), build.hash_one(String::from("MUG")));
        assert_ne!(build.hash_one(("a", "b")), build.hash_one(("b", "a")));
        assert_ne!(build.hash_one(("ab", "")), build.hash_one(("a", "b")));
    }
}
