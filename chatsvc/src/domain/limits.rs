//! Rate limits: login attempts per account and per address, sends per user.
//!
//! GCRA token buckets from `governor`, keyed; idle keys are dropped by
//! [`RateLimits::forget_idle`], which the server calls periodically, so memory
//! follows the number of recently active keys.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::DomainError;

/// Per-minute and per-second budgets; 0 disables a limit.
#[derive(Debug, Clone)]
pub struct RateConfig {
    /// Login attempts per account per minute.
    pub login_per_account_per_min: u32,
    /// Login and registration attempts per client address per minute.
    pub auth_per_ip_per_min: u32,
    /// Messages a user may send per second (bursts up to 10 s worth).
    pub sends_per_user_per_sec: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            login_per_account_per_min: 10,
            auth_per_ip_per_min: 60,
            sends_per_user_per_sec: 50,
        }
    }
}

/// The live limiters.
pub struct RateLimits {
    login_account: Option<DefaultKeyedRateLimiter<String>>,
    auth_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    sends: Option<DefaultKeyedRateLimiter<u64>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(|n| Quota::per_minute(n).allow_burst(n))
}

impl RateLimits {
    pub fn new(config: &RateConfig) -> Self {
        let sends = NonZeroU32::new(config.sends_per_user_per_sec).map(|n| {
            let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(9));
            Quota::per_second(n).allow_burst(burst)
        });
        RateLimits {
            login_account: per_minute(config.login_per_account_per_min)
                .map(governor::RateLimiter::keyed),
            auth_ip: per_minute(config.auth_per_ip_per_min).map(governor::RateLimiter::keyed),
            sends: sends.map(governor::RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    fn check<K>(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Result<(), DomainError>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        match limiter {
            Some(l) => l.check_key(key).map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                metrics::counter!("rate_limited_total").increment(1);
                DomainError::RateLimited {
                    retry_after: wait.max(Duration::from_secs(1)),
                }
            }),
            None => Ok(()),
        }
    }

    /// A login attempt for `username` from `ip`.
    pub fn login(&self, username: &str, ip: Option<IpAddr>) -> Result<(), DomainError> {
        if let Some(ip) = ip {
            self.check(&self.auth_ip, &ip)?;
        }
        self.check(&self.login_account, &username.to_ascii_lowercase())
    }

    /// A registration from `ip`.
    pub fn register(&self, ip: Option<IpAddr>) -> Result<(), DomainError> {
        match ip {
            Some(ip) => self.check(&self.auth_ip, &ip),
            None => Ok(()),
        }
    }

    /// A message send by `user`.
    pub fn send(&self, user: u64) -> Result<(), DomainError> {
        self.check(&self.sends, &user)
    }

    /// Drops keys whose buckets are full again.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.login_account {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.auth_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.sends {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_key_and_can_be_disabled() {
        let limits = RateLimits::new(&RateConfig {
            login_per_account_per_min: 2,
            auth_per_ip_per_min: 0,
            sends_per_user_per_sec: 1,
        });
        assert!(limits.login("alice", None).is_ok());
        assert!(limits.login("ALICE", None).is_ok());
        match limits.login("alice", None) {
            Err(DomainError::RateLimited { retry_after }) => {
                assert!(retry_after >= Duration::from_secs(1))
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(
            limits.login("bob", None).is_ok(),
            "other accounts are unaffected"
        );
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..100 {
            assert!(limits.register(ip).is_ok(), "0 disables the limit");
        }
        for _ in 0..10 {
            assert!(limits.send(7).is_ok(), "burst of 10 s worth");
        }
        assert!(limits.send(7).is_err());
        assert!(limits.send(8).is_ok());
    }
}
