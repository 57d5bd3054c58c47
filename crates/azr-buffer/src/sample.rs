//! Seeded random draws: k distinct indices, and the counter-based coin flips
//! that make reservoir eviction replay identically after a restart.

/// SplitMix64: tiny, fast, and good enough for sampling indices; seeded per call.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fresh seed when the caller gives none.
pub(crate) fn entropy_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// `k` distinct indices in `0..n`, uniformly (Floyd's algorithm: k draws, no
/// retries, no O(n) memory). Returns fewer when `n < k`, in random order.
pub(crate) fn distinct(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n);
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    // Small draws (the common k = 6) check membership by a linear scan, which
    // beats hashing; large ones use a set.
    let mut seen = (k > 32).then(|| std::collections::HashSet::with_capacity(k));
    for j in n - k..n {
        let t = rng.below(j as u64 + 1) as usize;
        let taken = match &seen {
            Some(set) => set.contains(&t),
            None => chosen.contains(&t),
        };
        let pick = if taken { j } else { t };
        if let Some(set) = &mut seen {
            set.insert(pick);
        }
        chosen.push(pick);
    }
    // Floyd's picks are uniform as a set; shuffle for a uniform order too.
    for i in (1..chosen.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        chosen.swap(i, j);
    }
    chosen
}

/// The reservoir decision for the `seen`-th entry (1-based) of a lane with
/// `capacity`: `Some(slot)` to replace, `None` to drop the newcomer. A pure
/// function of (seed, lane, seen), so replaying the log repeats it exactly.
pub(crate) fn reservoir_slot(seed: u64, lane: usize, seen: u64, capacity: usize) -> Option<usize> {
    let mut rng = Rng::new(mix(seed ^ mix(lane as u64 + 1) ^ mix(seen)));
    let j = rng.below(seen);
    (j < capacity as u64).then_some(j as usize)
}
