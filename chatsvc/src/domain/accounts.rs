//! Registration, login, token refresh, logout, profiles.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use super::model::{GroupAddPolicy, LoginGrant, User};
use super::tokens::{hash_refresh_token, new_refresh_token, Caller};
use super::{now_ms, Chat, DomainError};
use crate::store::sessions::{self, Rotation};
use crate::store::{social, users, StoreError};

/// Lower-cases and checks a username: 3-32 of `[a-z0-9_.-]`.
pub fn normalize_username(raw: &str) -> Result<String, DomainError> {
    let name = raw.to_ascii_lowercase();
    let ok = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(DomainError::InvalidUsername)
    }
}

fn check_password(password: &str) -> Result<(), DomainError> {
    if (8..=256).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(DomainError::WeakPassword)
    }
}

async fn hash_password(password: String) -> Result<String, DomainError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| DomainError::internal_from("hash password", e.to_string()))
    })
    .await
    .map_err(|e| DomainError::internal_from("password hashing task", e))?
}

/// Verifies on a blocking thread; with no stored hash, verifies against a
/// fixed dummy so unknown usernames cost the same time as wrong passwords.
async fn verify_password(password: String, stored: Option<String>) -> Result<bool, DomainError> {
    tokio::task::spawn_blocking(move || {
        let Some(stored) = stored else {
            // Same work as a verification, result ignored.
            let salt = SaltString::from_b64("bXFjaGF0ZHVtbXlzYWx0")
                .map_err(|e| DomainError::internal_from("dummy salt", e.to_string()))?;
            let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            return Ok(false);
        };
        // Accounts that can't log in (service bots) store a non-hash.
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return Ok(false);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| DomainError::internal_from("password hashing task", e))?
}

impl Chat {
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<User, DomainError> {
        self.rates.register(ip).await?;
        let username = normalize_username(username)?;
        check_password(password)?;
        let hash = hash_password(password.to_owned()).await?;
        let now = now_ms();
        let user = self
            .store
            .write(move |c| users::insert(c, &username, &hash, now))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => DomainError::UsernameTaken,
                e => e.into(),
            })?;
        tracing::info!(user_id = user.id, username = %user.username, "user registered");
        Ok(user.into())
    }

    /// Logs in. Attempts are rate-limited per account and per client
    /// address, so passwords can't be guessed at speed.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<LoginGrant, DomainError> {
        self.rates.login(username, ip).await?;
        // A name that can't exist still pays for a hash verification.
        let name = normalize_username(username).unwrap_or_default();
        let found = self
            .store
            .read(move |c| users::credentials(c, &name))
            .await?;
        let (user, stored) = match found {
            Some((u, h)) => (Some(u), Some(h)),
            None => (None, None),
        };
        if !verify_password(password.to_owned(), stored).await? {
            return Err(DomainError::InvalidCredentials);
        }
        let user = user.ok_or(DomainError::InvalidCredentials)?;
        let (refresh, hash) = new_refresh_token();
        let now = now_ms();
        let expires = now + self.tokens.refresh_ttl().as_millis() as i64;
        let user_id = user.id;
        let session_id = self
            .store
            .write(move |c| sessions::create(c, user_id, &hash, now, expires))
            .await?;
        self.grant(user.into(), session_id, refresh)
    }

    fn grant(
        &self,
        user: User,
        session_id: u64,
        refresh_token: String,
    ) -> Result<LoginGrant, DomainError> {
        Ok(LoginGrant {
            access_token: self.tokens.issue(user.id, session_id)?,
            refresh_token,
            expires_in: self.tokens.access_ttl().as_secs(),
            token_type: "Bearer",
            user,
        })
    }

    /// Rotates a refresh token. Presenting an already-rotated token revokes
    /// the session and disconnects its MQTT connections.
    pub async fn refresh(&self, refresh_token: &str) -> Result<LoginGrant, DomainError> {
        let old = hash_refresh_token(refresh_token);
        let (refresh, new) = new_refresh_token();
        let now = now_ms();
        let expires = now + self.tokens.refresh_ttl().as_millis() as i64;
        let rotation = self
            .store
            .write(move |c| sessions::rotate(c, &old, &new, now, expires))
            .await?;
        match rotation {
            Rotation::Rotated {
                session_id,
                user_id,
            } => {
                let user = self.store.read(move |c| users::by_id(c, user_id)).await?;
                let user = user.ok_or(DomainError::InvalidToken)?;
                self.grant(user.into(), session_id, refresh)
            }
            Rotation::Reused {
                session_id,
                user_id,
            } => {
                tracing::warn!(user_id, session_id, "refresh token reused: session revoked");
                self.tokens.revoke(session_id, now);
                self.downlink.end_sessions(user_id, Some(session_id));
                Err(DomainError::InvalidToken)
            }
            Rotation::Invalid => Err(DomainError::InvalidToken),
        }
    }

    /// Ends the caller's login session (or all of the user's sessions):
    /// refresh token revoked, access tokens refused from now on, MQTT
    /// connections of the session closed.
    pub async fn logout(&self, caller: Caller, everywhere: bool) -> Result<usize, DomainError> {
        let now = now_ms();
        let user_id = caller.user_id;
        let sessions = if everywhere {
            self.store
                .write(move |c| sessions::revoke_all(c, user_id, now))
                .await?
        } else {
            let sid = caller.session_id;
            self.store
                .write(move |c| sessions::revoke(c, sid, now))
                .await?;
            vec![sid]
        };
        for sid in &sessions {
            self.tokens.revoke(*sid, now);
        }
        let closed = self
            .downlink
            .end_sessions(user_id, (!everywhere).then_some(caller.session_id));
        tracing::info!(user_id, sessions = sessions.len(), closed, "logged out");
        Ok(closed)
    }

    /// Closes every MQTT connection of the user (on every node of a
    /// cluster); returns how many were closed on this node. Their tokens
    /// stay valid: they may connect again.
    pub fn disconnect_user(&self, user_id: u64) -> usize {
        self.downlink.end_sessions(user_id, None)
    }

    /// Reloads revocations that may still cover live access tokens, and
    /// which sessions the store has (startup; see
    /// [`super::tokens::Tokens::know_sessions_up_to`]).
    pub async fn load_token_state(&self) -> Result<(), DomainError> {
        let started = now_ms();
        let since = started - self.tokens.access_ttl().as_millis() as i64 - 10_000;
        let (revoked, last) = self
            .store
            .read(move |c| {
                Ok::<_, DomainError>((sessions::revoked_since(c, since)?, sessions::last_id(c)?))
            })
            .await?;
        for (sid, at) in revoked {
            self.tokens.revoke(sid, at);
        }
        self.tokens.know_sessions_up_to(last, started as u64);
        Ok(())
    }

    /// Sets a new password and ends every session of the user: refresh
    /// tokens revoked, access tokens refused, MQTT connections closed.
    pub async fn reset_password(&self, user_id: u64, password: &str) -> Result<(), DomainError> {
        check_password(password)?;
        let hash = hash_password(password.to_owned()).await?;
        let now = now_ms();
        let sessions = self
            .store
            .write(move |c| {
                if !users::set_password_hash(c, user_id, &hash)? {
                    return Err(DomainError::NotFound("user"));
                }
                Ok(sessions::revoke_all(c, user_id, now)?)
            })
            .await?;
        for sid in sessions {
            self.tokens.revoke(sid, now);
        }
        self.downlink.end_sessions(user_id, None);
        tracing::info!(user_id, "password reset; sessions ended");
        Ok(())
    }

    /// Looks a user up by name (for operator tools).
    pub async fn user_id_by_name(&self, name: &str) -> Result<u64, DomainError> {
        Ok(self.user_by_name(name).await?.id)
    }

    pub async fn user(&self, id: u64) -> Result<User, DomainError> {
        self.store
            .read(move |c| users::by_id(c, id))
            .await?
            .map(User::from)
            .ok_or(DomainError::NotFound("user"))
    }

    /// The caller's own profile, with their settings.
    pub async fn me(&self, caller: Caller) -> Result<User, DomainError> {
        let me = caller.user_id;
        let default = self.default_group_add_policy();
        self.store
            .read(move |c| {
                let mut user = users::by_id(c, me)?
                    .map(User::from)
                    .ok_or(DomainError::NotFound("user"))?;
                let policy = users::group_add_policy(c, me)?;
                user.group_add_policy = Some(policy.map_or(default, |p| GroupAddPolicy::parse(&p)));
                Ok(user)
            })
            .await
    }

    /// Sets who may add the user to groups directly.
    pub async fn set_group_add_policy(
        &self,
        caller: Caller,
        policy: GroupAddPolicy,
    ) -> Result<(), DomainError> {
        let me = caller.user_id;
        self.charge(me, 0)?;
        Ok(self
            .store
            .write(move |c| users::set_group_add_policy(c, me, policy.as_str()))
            .await?)
    }

    /// A profile as `caller` may see it: a user who blocks the caller
    /// answers exactly like one who doesn't exist.
    pub async fn profile(&self, caller: Caller, id: u64) -> Result<User, DomainError> {
        let me = caller.user_id;
        self.store
            .read(move |c| match users::by_id(c, id)? {
                Some(u) if !social::has_blocked(c, u.id, me)? => Ok(User::from(u)),
                _ => Err(DomainError::NotFound("user")),
            })
            .await
    }

    /// [`Chat::profile`] by username.
    pub async fn profile_by_name(&self, caller: Caller, name: &str) -> Result<User, DomainError> {
        let user = self.user_by_name(name).await?;
        self.profile(caller, user.id).await
    }

    pub async fn user_by_name(&self, name: &str) -> Result<User, DomainError> {
        let name = normalize_username(name).map_err(|_| DomainError::NotFound("user"))?;
        self.store
            .read(move |c| users::by_username(c, &name))
            .await?
            .map(User::from)
            .ok_or(DomainError::NotFound("user"))
    }

    pub async fn set_display_name(
        &self,
        user_id: u64,
        name: Option<String>,
    ) -> Result<User, DomainError> {
        self.charge(user_id, 0)?;
        // Blank clears it; anything else must be a name people can read.
        let name = match name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) => Some(super::names::check("display_name", n, 64)?),
        };
        self.store
            .write(move |c| users::set_display_name(c, user_id, name.as_deref()))
            .await?
            .map(User::from)
            .ok_or(DomainError::NotFound("user"))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_username;

    #[test]
    fn usernames() {
        assert_eq!(normalize_username("Alice").ok().as_deref(), Some("alice"));
        assert!(normalize_username("a.b-c_1").is_ok());
        for bad in ["ab", "a b", "ålice", "x".repeat(33).as_str(), "a/b", ""] {
            assert!(normalize_username(bad).is_err(), "{bad}");
        }
    }
}
