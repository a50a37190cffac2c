//! The one source of jitter: random fractions that spread the retries of many instances
//! (the writer's backoff, the Genesys client's backoff and rate-limit pacing), so they do
//! not retry in step. Not cryptographic and needs no crate: xorshift64*.
//!
//! A [`Jitter`] is a generator with its own state, seedable so tests are deterministic;
//! [`shared`] is one process-wide generator seeded from the clock, for callers that keep
//! no state of their own.

use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// An xorshift64* generator of fractions in `[0, 1)`.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator whose sequence is fixed by `seed` (any value; 0 is made odd).
    pub(crate) const fn seeded(seed: u64) -> Jitter {
        Jitter { state: seed | 1 }
    }

    /// A generator seeded from the wall clock, so instances started together differ.
    pub(crate) fn from_clock() -> Jitter {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Jitter::seeded(seed)
    }

    /// The next fraction, in `[0, 1)`.
    pub(crate) fn next_fraction(&mut self) -> f64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The next fraction in `[0, 1)` from the process-wide generator, seeded from the clock
/// on first use.
pub(crate) fn shared() -> f64 {
    static SHARED: Mutex<Option<Jitter>> = Mutex::new(None);
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    shared
        .get_or_insert_with(Jitter::from_clock)
        .next_fraction()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_stay_in_the_unit_interval() {
        let mut jitter = Jitter::seeded(42);
        for _ in 0..1000 {
            assert!((0.0..1.0).contains(&jitter.next_fraction()));
            assert!((0.0..1.0).contains(&shared()));
        }
    }

    #[test]
    fn a_seed_fixes_the_sequence() {
        let (mut a, mut b) = (Jitter::seeded(7), Jitter::seeded(7));
        let first: Vec<f64> = (0..5).map(|_| a.next_fraction()).collect();
        let second: Vec<f64> = (0..5).map(|_| b.next_fraction()).collect();
        assert_eq!(first, second);
        assert_ne!(first[0], first[1]);
    }
}
