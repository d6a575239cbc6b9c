//! Service accounts: third-party services send over HTTP as a bot user,
//! authenticated by an API key (`Authorization: Bearer mqk_...`).
//!
//! An admin creates the service: a bot user (it can't log in with a
//! password) and a key, shown once and stored as a SHA-256 hash. A key has
//! scopes (`send`: messages as the bot; `notice`: messages carrying a
//! `notice` object, shown by clients as system notices) and its own rate
//! limit. Keys can be revoked; a revoked key is refused at once.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use base64::Engine;
use governor::{DefaultDirectRateLimiter, Quota};
use sha2::{Digest, Sha256};

use super::model::User;
use super::tokens::{Caller, ServiceGrant};
use super::{now_ms, Chat, DomainError};
use crate::store::services::{self as store, ServiceKeyRow};
use crate::store::{users, StoreError};

/// The prefix that tells an API key from an access token.
pub const KEY_PREFIX: &str = "mqk_";
const SCOPES: [&str; 2] = ["send", "notice"];

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A created service; `key` is only ever shown here.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Service {
    pub key_id: u64,
    pub user: User,
    pub scopes: Vec<String>,
    pub rate_per_sec: u32,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Per-key send limiters (each key has its own rate).
#[derive(Default)]
pub struct KeyLimits {
    limiters: Mutex<HashMap<u64, (u32, DefaultDirectRateLimiter)>>,
}

impl std::fmt::Debug for KeyLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimits").finish_non_exhaustive()
    }
}

impl KeyLimits {
    /// One request by `key_id`, limited to `rate` per second (bursts of 2 s).
    pub fn check(&self, key_id: u64, rate: u32) -> Result<(), DomainError> {
        let Some(per_sec) = NonZeroU32::new(rate) else {
            return Ok(());
        };
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let entry = limiters.entry(key_id).or_insert_with(|| {
            let burst = per_sec.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            (
                rate,
                governor::RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst)),
            )
        });
        if entry.0 != rate {
            let burst = per_sec.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            *entry = (
                rate,
                governor::RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst)),
            );
        }
        entry.1.check().map_err(|_| {
            crate::metrics::rate_limited(crate::metrics::Limit::ServiceKey);
            DomainError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            }
        })
    }
}

fn service(row: ServiceKeyRow, user: User, key: Option<String>) -> Service {
    Service {
        key_id: row.id,
        user,
        scopes: row.scopes,
        rate_per_sec: row.rate_per_sec,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
        key,
    }
}

impl Chat {
    /// Creates a bot user named `username` and an API key for it.
    pub async fn create_service(
        &self,
        username: &str,
        scopes: Vec<String>,
        rate_per_sec: u32,
    ) -> Result<Service, DomainError> {
        let username = super::accounts::normalize_username(username)?;
        let scopes = if scopes.is_empty() {
            vec!["send".to_owned()]
        } else {
            scopes
        };
        if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(DomainError::Invalid(format!(
                "unknown scope {bad}; known: {}",
                SCOPES.join(", ")
            )));
        }
        let mut raw = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
        let key = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let key_hash = hash(&key);
        let now = now_ms();
        let (row, user) = self
            .store
            .write(move |c| {
                // "!" is no password hash: nobody can log in as a bot.
                let user = users::insert(c, &username, "!", now).map_err(|e| match e {
                    StoreError::Conflict(_) => DomainError::UsernameTaken,
                    e => e.into(),
                })?;
                store::mark_bot(c, user.id)?;
                let row = store::create(c, user.id, &key_hash, &scopes, rate_per_sec, now)?;
                Ok::<_, DomainError>((row, user))
            })
            .await?;
        tracing::info!(user_id = user.id, key_id = row.id, "service created");
        Ok(service(row, user.into(), Some(key)))
    }

    pub async fn revoke_service_key(&self, key_id: u64) -> Result<(), DomainError> {
        if self
            .store
            .write(move |c| store::revoke(c, key_id, now_ms()))
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("service key"))
        }
    }

    pub async fn services(&self) -> Result<Vec<Service>, DomainError> {
        self.store
            .read(|c| {
                let mut out = Vec::new();
                for row in store::list(c)? {
                    if let Some(user) = users::by_id(c, row.user_id)? {
                        out.push(service(row, user.into(), None));
                    }
                }
                Ok::<_, DomainError>(out)
            })
            .await
    }

    /// Checks an API key and its rate limit; the caller is the bot user.
    pub async fn authenticate_key(&self, key: &str) -> Result<Caller, DomainError> {
        let key_hash = hash(key);
        let row = self
            .store
            .read(move |c| store::by_hash(c, &key_hash))
            .await?
            .ok_or(DomainError::InvalidToken)?;
        self.key_limits.check(row.id, row.rate_per_sec)?;
        Ok(Caller {
            user_id: row.user_id,
            session_id: 0,
            service: Some(ServiceGrant {
                key_id: row.id,
                send: row.scopes.iter().any(|s| s == "send"),
                notice: row.scopes.iter().any(|s| s == "notice"),
            }),
        })
    }
}
