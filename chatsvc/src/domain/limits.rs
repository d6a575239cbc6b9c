//! Rate limits: login attempts per account and address, auth per address
//! prefix, sends per user, and every other state change per user.
//!
//! GCRA token buckets from `governor`, keyed; idle keys are dropped by
//! [`RateLimits::forget_idle`], which the server calls periodically, so memory
//! follows the number of recently active keys.
//!
//! On a store other processes share (PostgreSQL: several chatd nodes), the
//! limits that protect accounts (login and auth attempts, sends) are
//! buckets in the store instead ([`Store::take_shared`]): N nodes must not
//! grant N budgets. Same quotas, keys and answers; only where the bucket
//! lives differs. The action budget stays per process: it guards a node's
//! own work, not an account.
//!
//! Login keys pair the account with the caller's address prefix, never the
//! account alone: a limit on the account alone lets anyone lock its owner
//! out with ten wrong passwords. Address limits key on the prefix (/24 for
//! IPv4, /64 for IPv6), since one host holds a whole IPv6 /64 and rotating
//! addresses inside it must not buy fresh budgets.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::DomainError;
use crate::metrics::Limit;
use crate::store::{Bucket, Store};

/// Per-minute and per-second budgets; 0 disables a limit.
#[derive(Debug, Clone)]
pub struct RateConfig {
    /// Login attempts per account from one address prefix per minute.
    pub login_per_account_per_min: u32,
    /// Login and registration attempts per address prefix per minute.
    pub auth_per_ip_per_min: u32,
    /// Messages a user may send per second (bursts up to 10 s worth).
    pub sends_per_user_per_sec: u32,
    /// Action units a user may spend per second on every other state
    /// change (bursts up to [`ACTION_BURST_SECS`] worth); see [`action_cost`].
    pub actions_per_user_per_sec: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            login_per_account_per_min: 10,
            auth_per_ip_per_min: 60,
            sends_per_user_per_sec: 50,
            actions_per_user_per_sec: 20,
        }
    }
}

/// Seconds of action budget a user may spend at once.
pub const ACTION_BURST_SECS: u32 = 30;

/// Recipients one action unit covers: an edit in a group of 408 costs 9
/// units, in a direct conversation 1.
pub const RECIPIENTS_PER_UNIT: usize = 50;

/// What a state change reaching `recipients` users costs: 1, plus 1 per
/// [`RECIPIENTS_PER_UNIT`], since stored events and pushes grow with them.
pub fn action_cost(recipients: usize) -> u32 {
    u32::try_from(1 + recipients / RECIPIENTS_PER_UNIT).unwrap_or(u32::MAX)
}

/// The part of an address that one client controls: the /24 of an IPv4
/// address, the /64 of an IPv6 one (IPv4-mapped IPv6 counts as IPv4).
pub fn address_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => address_prefix(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

/// The live limiters.
pub struct RateLimits {
    login_account: Option<DefaultKeyedRateLimiter<(String, Option<IpAddr>)>>,
    auth_prefix: Option<DefaultKeyedRateLimiter<IpAddr>>,
    sends: Option<DefaultKeyedRateLimiter<u64>>,
    actions: Option<(DefaultKeyedRateLimiter<u64>, NonZeroU32)>,
    clock: DefaultClock,
    /// Set on a shared store: the login, auth and send limits live there,
    /// and the three in-memory limiters above are `None`.
    shared: Option<Shared>,
}

/// The buckets kept in a shared store, `None` where the limit is off.
struct Shared {
    store: Store,
    login_account: Option<Bucket>,
    auth_prefix: Option<Bucket>,
    sends: Option<Bucket>,
}

impl Shared {
    async fn take(
        &self,
        limit: Limit,
        bucket: Option<Bucket>,
        key: &str,
    ) -> Result<(), DomainError> {
        let Some(bucket) = bucket else {
            return Ok(());
        };
        match self.store.take_shared(key, bucket, 1).await? {
            None => Ok(()),
            Some(wait) => Err(limited(limit, wait)),
        }
    }
}

/// The answer to a limited call; never less than a second to wait, as
/// `Retry-After` counts in whole seconds.
fn limited(limit: Limit, wait: Duration) -> DomainError {
    crate::metrics::rate_limited(limit);
    DomainError::RateLimited {
        retry_after: wait.max(Duration::from_secs(1)),
    }
}

/// The shared bucket of `n` per minute, bursts of `n` (as [`per_minute`]).
fn per_minute_bucket(n: u32) -> Option<Bucket> {
    (n > 0).then(|| Bucket {
        per_sec: f64::from(n) / 60.0,
        burst: n,
    })
}

/// The shared bucket of `n` per second, bursts of `secs` seconds worth.
fn per_second_bucket(n: u32, secs: u32) -> Option<Bucket> {
    (n > 0).then(|| Bucket {
        per_sec: f64::from(n),
        burst: n.saturating_mul(secs),
    })
}

/// A shared login key: the account (lowercased, hashed when longer than a
/// username may be, so a key stays small whatever a caller sends) and the
/// address prefix.
fn login_key(account: &str, prefix: Option<IpAddr>) -> String {
    use sha2::Digest;
    let prefix = prefix.map_or_else(|| "-".to_owned(), |p| p.to_string());
    if account.len() <= 64 {
        format!("login:{prefix}:{account}")
    } else {
        let digest = sha2::Sha256::digest(account.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("login:{prefix}:#{hex}")
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(|n| Quota::per_minute(n).allow_burst(n))
}

/// `n` per second with bursts of `secs` seconds worth.
fn per_second(n: u32, secs: u32) -> Option<(Quota, NonZeroU32)> {
    NonZeroU32::new(n).map(|n| {
        let burst = NonZeroU32::new(n.get().saturating_mul(secs)).unwrap_or(n);
        (Quota::per_second(n).allow_burst(burst), burst)
    })
}

impl RateLimits {
    pub fn new(config: &RateConfig) -> Self {
        RateLimits {
            login_account: per_minute(config.login_per_account_per_min)
                .map(governor::RateLimiter::keyed),
            auth_prefix: per_minute(config.auth_per_ip_per_min).map(governor::RateLimiter::keyed),
            sends: per_second(config.sends_per_user_per_sec, 10)
                .map(|(q, _)| governor::RateLimiter::keyed(q)),
            actions: per_second(config.actions_per_user_per_sec, ACTION_BURST_SECS)
                .map(|(q, burst)| (governor::RateLimiter::keyed(q), burst)),
            clock: DefaultClock::default(),
            shared: None,
        }
    }

    /// The limits for a process on `store`: on a shared store, the login,
    /// auth and send limits are the store's buckets; otherwise as
    /// [`RateLimits::new`].
    pub fn for_store(config: &RateConfig, store: &Store) -> Self {
        let mut limits = RateLimits::new(config);
        if store.is_shared() {
            limits.login_account = None;
            limits.auth_prefix = None;
            limits.sends = None;
            limits.shared = Some(Shared {
                store: store.clone(),
                login_account: per_minute_bucket(config.login_per_account_per_min),
                auth_prefix: per_minute_bucket(config.auth_per_ip_per_min),
                sends: per_second_bucket(config.sends_per_user_per_sec, 10),
            });
        }
        limits
    }

    fn limited(
        &self,
        limit: Limit,
        not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> DomainError {
        limited(limit, not_until.wait_time_from(self.clock.now()))
    }

    fn check<K>(
        &self,
        limit: Limit,
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Result<(), DomainError>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        match limiter {
            Some(l) => l.check_key(key).map_err(|n| self.limited(limit, &n)),
            None => Ok(()),
        }
    }

    /// A login attempt for `username` from `ip`: limited per address prefix
    /// and per (account, address prefix), so guessing from one place slows
    /// down while the owner, from anywhere else, still gets in.
    pub async fn login(&self, username: &str, ip: Option<IpAddr>) -> Result<(), DomainError> {
        let prefix = ip.map(address_prefix);
        if let Some(shared) = &self.shared {
            if let Some(prefix) = prefix {
                let key = format!("auth:{prefix}");
                shared.take(Limit::Login, shared.auth_prefix, &key).await?;
            }
            let key = login_key(&username.to_ascii_lowercase(), prefix);
            return shared.take(Limit::Login, shared.login_account, &key).await;
        }
        if let Some(prefix) = prefix {
            self.check(Limit::Login, &self.auth_prefix, &prefix)?;
        }
        self.check(
            Limit::Login,
            &self.login_account,
            &(username.to_ascii_lowercase(), prefix),
        )
    }

    /// A registration from `ip`, limited per address prefix.
    pub async fn register(&self, ip: Option<IpAddr>) -> Result<(), DomainError> {
        if let (Some(shared), Some(ip)) = (&self.shared, ip) {
            let key = format!("auth:{}", address_prefix(ip));
            return shared.take(Limit::Register, shared.auth_prefix, &key).await;
        }
        match ip {
            Some(ip) => self.check(Limit::Register, &self.auth_prefix, &address_prefix(ip)),
            None => Ok(()),
        }
    }

    /// A message send by `user`.
    pub async fn send(&self, user: u64) -> Result<(), DomainError> {
        if let Some(shared) = &self.shared {
            let key = format!("send:{user}");
            return shared.take(Limit::Send, shared.sends, &key).await;
        }
        self.check(Limit::Send, &self.sends, &user)
    }

    /// Any other state change by `user`, reaching `recipients` users.
    pub fn action(&self, user: u64, recipients: usize) -> Result<(), DomainError> {
        let Some((limiter, burst)) = &self.actions else {
            return Ok(());
        };
        // A change larger than the whole burst still goes through once the
        // bucket is full, so no legitimate call becomes impossible.
        let cost = NonZeroU32::new(action_cost(recipients))
            .unwrap_or(NonZeroU32::MIN)
            .min(*burst);
        match limiter.check_key_n(&user, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(n)) => Err(self.limited(Limit::Action, &n)),
            // Unreachable: the cost is capped at the burst.
            Err(_) => Err(DomainError::RateLimited {
                retry_after: Duration::from_secs(u64::from(ACTION_BURST_SECS)),
            }),
        }
    }

    /// Drops keys whose buckets are full again.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.login_account {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.auth_prefix {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.sends {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some((l, _)) = &self.actions {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_apply_per_key_and_can_be_disabled() {
        let limits = RateLimits::new(&RateConfig {
            login_per_account_per_min: 2,
            auth_per_ip_per_min: 0,
            sends_per_user_per_sec: 1,
            actions_per_user_per_sec: 1,
        });
        assert!(limits.login("alice", None).await.is_ok());
        assert!(limits.login("ALICE", None).await.is_ok());
        match limits.login("alice", None).await {
            Err(DomainError::RateLimited { retry_after }) => {
                assert!(retry_after >= Duration::from_secs(1))
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(
            limits.login("bob", None).await.is_ok(),
            "other accounts are unaffected"
        );
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..100 {
            assert!(limits.register(ip).await.is_ok(), "0 disables the limit");
        }
        for _ in 0..10 {
            assert!(limits.send(7).await.is_ok(), "burst of 10 s worth");
        }
        assert!(limits.send(7).await.is_err());
        assert!(limits.send(8).await.is_ok());
        // 30 units: one 408-recipient change costs 9.
        for _ in 0..3 {
            assert!(limits.action(7, 408).is_ok());
        }
        assert!(limits.action(7, 408).is_err(), "27 of 30 spent");
        assert!(limits.action(7, 1).is_ok(), "3 left for a cheap one");
        assert!(limits.action(9, 100_000).is_ok(), "capped at the burst");
    }

    #[tokio::test]
    async fn logins_are_keyed_by_account_and_prefix() {
        let limits = RateLimits::new(&RateConfig {
            login_per_account_per_min: 2,
            auth_per_ip_per_min: 3,
            ..RateConfig::default()
        });
        let attacker = Some(IpAddr::from([10, 1, 1, 7]));
        assert!(limits.login("alice", attacker).await.is_ok());
        assert!(limits.login("alice", attacker).await.is_ok());
        assert!(limits.login("alice", attacker).await.is_err());
        let owner = Some(IpAddr::from([10, 1, 2, 7]));
        assert!(
            limits.login("alice", owner).await.is_ok(),
            "another /24 gets in"
        );
        // Rotating inside the /24 buys nothing: the prefix's 3 are spent.
        assert!(limits
            .login("bob", Some(IpAddr::from([10, 1, 1, 8])))
            .await
            .is_err());
        assert!(limits
            .register(Some(IpAddr::from([10, 1, 1, 9])))
            .await
            .is_err());
    }

    #[test]
    fn prefixes() {
        let p = |s: &str| s.parse::<IpAddr>().map(address_prefix).ok();
        assert_eq!(p("192.0.2.77"), p("192.0.2.0"));
        assert_ne!(p("192.0.2.77"), p("192.0.3.77"));
        assert_eq!(p("2001:db8:1:2:aaaa::1"), p("2001:db8:1:2::"));
        assert_ne!(p("2001:db8:1:2::1"), p("2001:db8:1:3::1"));
        assert_eq!(p("::ffff:192.0.2.9"), p("192.0.2.0"));
    }
}
