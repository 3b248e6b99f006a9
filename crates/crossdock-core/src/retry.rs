//! What to do after a failed delivery: retry later (exponential backoff with jitter) or give up.

use crate::time::Timestamp;

/// How a target's deliveries are retried. Chosen per target in configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, before an action is dead-lettered.
    pub attempts_max: u32,
    /// The delay after the first failure, before jitter.
    pub backoff_base_ms: u64,
    /// No delay is longer than this, before jitter.
    pub backoff_max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_max: 8,
            backoff_base_ms: 500,
            backoff_max_ms: 5 * 60 * 1000,
        }
    }
}

/// The outcome of [`RetryPolicy::after_failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureDecision {
    RetryAt(Timestamp),
    DeadLetter,
}

impl RetryPolicy {
    /// The delay before the next attempt once `attempts_made` attempts have failed.
    ///
    /// The ceiling doubles with each failure up to `backoff_max_ms`; the delay is drawn from its
    /// upper half ("equal jitter") so retries from many actions spread out yet never come
    /// immediately. `jitter` is a number in `[0, 1)` supplied by the caller.
    pub fn delay_ms(&self, attempts_made: u32, jitter: f64) -> u64 {
        let doublings = attempts_made.saturating_sub(1).min(40);
        let ceiling = self
            .backoff_base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.backoff_max_ms);
        // Fixed-point jitter: float products of large delays could round past the ceiling.
        let fraction = (jitter.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u128;
        let half = ceiling / 2;
        let spread = (u128::from(ceiling - half) * fraction) >> 32;
        half + u64::try_from(spread).unwrap_or(0)
    }

    /// Decides what happens to an action whose attempt number `attempts_made` just failed.
    /// A permanent failure (the target said the request itself is wrong) is never retried.
    pub fn after_failure(
        &self,
        attempts_made: u32,
        permanent: bool,
        now: Timestamp,
        jitter: f64,
    ) -> FailureDecision {
        if permanent || attempts_made >= self.attempts_max {
            return FailureDecision::DeadLetter;
        }
        let delay = self.delay_ms(attempts_made, jitter);
        FailureDecision::RetryAt(now.plus_millis(i64::try_from(delay).unwrap_or(i64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: RetryPolicy = RetryPolicy {
        attempts_max: 5,
        backoff_base_ms: 100,
        backoff_max_ms: 1000,
    };

    #[test]
    fn delays_double_up_to_the_ceiling() {
        let top: Vec<u64> = (1..=6).map(|n| POLICY.delay_ms(n, 0.999_999)).collect();
        assert_eq!(top, vec![99, 199, 399, 799, 999, 999]);
        let bottom: Vec<u64> = (1..=6).map(|n| POLICY.delay_ms(n, 0.0)).collect();
        assert_eq!(bottom, vec![50, 100, 200, 400, 500, 500]);
    }

    #[test]
    fn the_last_attempt_and_permanent_failures_dead_letter() {
        let now = Timestamp::from_unix_micros(0);
        assert_eq!(
            POLICY.after_failure(1, false, now, 0.0),
            FailureDecision::RetryAt(Timestamp::from_unix_micros(50_000))
        );
        assert_eq!(
            POLICY.after_failure(5, false, now, 0.0),
            FailureDecision::DeadLetter
        );
        assert_eq!(
            POLICY.after_failure(1, true, now, 0.0),
            FailureDecision::DeadLetter
        );
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(attempts in 0u32..1000, jitter in -1.0f64..2.0, base in 0u64..u64::MAX, max in 0u64..u64::MAX) {
            let policy = RetryPolicy { attempts_max: 10, backoff_base_ms: base, backoff_max_ms: max };
            let delay = policy.delay_ms(attempts, jitter);
            prop_assert!(delay <= max);
        }
    }
}
