//! Exponential backoff with jitter, and the retry policy built on it.

use std::time::Duration;

/// Exponential backoff, capped, with "equal jitter": each delay is a random
/// point in the upper half of the exponential step. Half fixed keeps delays
/// from collapsing to zero; half random keeps a crowd of clients that lost the
/// server at the same moment from coming back at the same moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// Ceiling of every delay.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max }
    }

    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with_jitter(attempt, rand::random::<f64>())
    }

    /// [`Backoff::delay`] with the random part given, `jitter` in `[0, 1]`.
    fn delay_with_jitter(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 1u32 << attempt.min(31);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        let half = ceiling / 2;
        // f64 rounding could push a huge product past `half`; never past the ceiling.
        let random = Duration::try_from_secs_f64(half.as_secs_f64() * jitter.clamp(0.0, 1.0))
            .unwrap_or(half)
            .min(half);
        half.saturating_add(random).min(ceiling)
    }
}

impl Default for Backoff {
    /// 500 ms doubling up to 30 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

/// How often an HTTP call is tried before its error is returned.
///
/// Only transient failures are retried (transport errors, timeouts, 5xx, 408,
/// 429); see [`SdkError::is_transient`](crate::SdkError::is_transient). Calls
/// that must not run twice are retried only while their request provably
/// never reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first one included; 1 disables retries.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// Try once, never retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        backoff: Backoff::new(Duration::ZERO, Duration::ZERO),
    };
}

impl Default for RetryPolicy {
    /// 5 tries, 200 ms doubling up to 5 s: rides out a server restart of a few
    /// seconds without holding a user's send for long.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

    #[test]
    fn doubles_until_the_cap() {
        let ceilings: Vec<_> = (0..8).map(|a| B.delay_with_jitter(a, 1.0)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            ceilings,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(2000),
                ms(2000),
                ms(2000)
            ]
        );
    }

    #[test]
    fn jitter_stays_in_upper_half() {
        assert_eq!(B.delay_with_jitter(2, 0.0), Duration::from_millis(200));
        assert_eq!(B.delay_with_jitter(2, 0.5), Duration::from_millis(300));
        // Out-of-range jitter is clamped rather than trusted.
        assert_eq!(B.delay_with_jitter(2, 7.0), Duration::from_millis(400));
        assert_eq!(B.delay_with_jitter(2, -1.0), Duration::from_millis(200));
        for attempt in 0..40 {
            let d = B.delay(attempt);
            let ceiling = B.delay_with_jitter(attempt, 1.0);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        assert_eq!(B.delay_with_jitter(u32::MAX, 1.0), B.max);
        let wide = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert!(wide.delay_with_jitter(10, 1.0) >= Duration::MAX / 2);
    }

    #[test]
    fn zero_backoff_is_zero() {
        assert_eq!(RetryPolicy::NONE.backoff.delay(3), Duration::ZERO);
    }
}
