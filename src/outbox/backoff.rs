//! Retry timing: exponential backoff with full jitter, capped, and `Retry-After` honoured.
//!
//! delay = uniform(0, min(max, base · 2^(attempt−1))); a server's `Retry-After` is a floor.
//! Full jitter spreads a whole backlog's retries instead of sending them in waves.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The cap for the `attempt`-th failure (1-based), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }

    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let jittered = Duration::from_millis(rng.random_range(0..=ceiling));
        match retry_after {
            Some(floor) => jittered.max(floor),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_the_cap() {
        let secs: Vec<u64> = (1..=12).map(|a| b().ceiling(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b().ceiling(10_000).as_secs(), 300);
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling() {
        let mut rng = rand::rng();
        for attempt in 1..20 {
            for _ in 0..100 {
                assert!(b().delay(attempt, None, &mut rng) <= b().ceiling(attempt));
            }
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = rand::rng();
        for _ in 0..100 {
            assert!(
                b().delay(1, Some(Duration::from_secs(30)), &mut rng) >= Duration::from_secs(30)
            );
        }
    }
}
