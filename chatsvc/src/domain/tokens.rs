//! Access tokens (JWT, HS256) and refresh tokens (random, stored hashed).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{now_ms, DomainError};

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, decimal.
    pub sub: String,
    /// The login session the token belongs to.
    pub sid: u64,
    pub iat: u64,
    pub exp: u64,
    /// When it was issued, in Unix milliseconds (`iat` is in seconds, too
    /// coarse to tell a token from before a restart from one just after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<u64>,
}

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: u64,
    pub session_id: u64,
    /// Set when the caller is a service, authenticated by an API key.
    pub service: Option<ServiceGrant>,
}

/// What a service key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceGrant {
    pub key_id: u64,
    /// May send messages as its bot user.
    pub send: bool,
    /// May send system notices (`body.notice`).
    pub notice: bool,
}

/// Issues and checks tokens. Revoked sessions are kept in memory for one
/// access-token lifetime, which is as long as their tokens could be used.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
    revoked: Mutex<HashMap<u64, i64>>,
    /// At startup: the store's highest session id, and when chatd started
    /// in Unix milliseconds (see [`Tokens::know_sessions_up_to`]).
    known: OnceLock<(u64, u64)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        // Tokens are checked by the service that signed them: only a second
        // of slack for rounding.
        validation.leeway = 1;
        // chatd never sets `nbf`, but a token that carries one is held to it.
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
            refresh_ttl,
            revoked: Mutex::new(HashMap::new()),
            known: OnceLock::new(),
        }
    }

    /// Tells which sessions the store has: every one up to `last`, as of
    /// `started` (Unix milliseconds). A token issued before that for a session
    /// above `last` comes from a database this one does not continue: an
    /// older backup restored next to the same secret. Its session is gone,
    /// its user may be too, and that user's id may go to a new account;
    /// such tokens are refused. Set once, at startup.
    pub fn know_sessions_up_to(&self, last: u64, started: u64) {
        let _ = self.known.set((last, started));
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// A signed access token for the user's session.
    pub fn issue(&self, user_id: u64, session_id: u64) -> Result<String, DomainError> {
        let now_ms = now_ms() as u64;
        let now = now_ms / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id,
            iat: now,
            exp: now + self.access_ttl.as_secs(),
            iat_ms: Some(now_ms),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| DomainError::internal_from("sign token", e))
    }

    /// Checks signature, algorithm, expiry and revocation.
    pub fn verify(&self, token: &str) -> Result<Caller, DomainError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => DomainError::TokenExpired,
                _ => DomainError::InvalidToken,
            })?;
        let user_id: u64 = data
            .claims
            .sub
            .parse()
            .map_err(|_| DomainError::InvalidToken)?;
        if self.is_revoked(data.claims.sid) {
            return Err(DomainError::InvalidToken);
        }
        if let Some(&(last, started)) = self.known.get() {
            // Tokens of older versions carry whole seconds only.
            let issued = data.claims.iat_ms.unwrap_or(data.claims.iat * 1000);
            if data.claims.sid > last && issued < started {
                return Err(DomainError::InvalidToken);
            }
        }
        Ok(Caller {
            user_id,
            session_id: data.claims.sid,
            service: None,
        })
    }

    pub(crate) fn revoke(&self, session_id: u64, at_ms: i64) {
        let horizon = now_ms() - self.access_ttl.as_millis() as i64 - 10_000;
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        revoked.retain(|_, t| *t >= horizon);
        revoked.insert(session_id, at_ms);
    }

    fn is_revoked(&self, session_id: u64) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&session_id)
    }
}

/// A new refresh token (32 random bytes, base64url) and its SHA-256 hash.
pub(crate) fn new_refresh_token() -> (String, Vec<u8>) {
    let bytes: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

pub(crate) fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(60),
            Duration::from_secs(600),
        )
    }

    #[test]
    fn issued_tokens_verify() -> Result<(), DomainError> {
        let t = tokens();
        let token = t.issue(42, 7)?;
        assert_eq!(
            t.verify(&token)?,
            Caller {
                user_id: 42,
                session_id: 7,
                service: None,
            }
        );
        Ok(())
    }

    #[test]
    fn revoked_sessions_and_foreign_keys_fail() -> Result<(), DomainError> {
        let t = tokens();
        let token = t.issue(42, 7)?;
        let other = Tokens::new(
            b"another secret another secret!!!",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        assert!(matches!(
            other.verify(&token),
            Err(DomainError::InvalidToken)
        ));
        t.revoke(7, now_ms());
        assert!(matches!(t.verify(&token), Err(DomainError::InvalidToken)));
        Ok(())
    }

    /// Tokens issued before startup for sessions the store does not have
    /// (an older backup restored) are refused; older sessions' and new
    /// ones' are not.
    #[test]
    fn tokens_for_sessions_the_store_lacks_are_refused() -> Result<(), DomainError> {
        let t = tokens();
        let known = t.issue(1, 5)?;
        let lost = t.issue(2, 6)?;
        let now = now_ms() as u64;
        t.know_sessions_up_to(5, now + 1);
        assert_eq!(t.verify(&known)?.session_id, 5);
        assert!(matches!(t.verify(&lost), Err(DomainError::InvalidToken)));
        // A session created after startup may get the lost one's id.
        let t = tokens();
        t.know_sessions_up_to(5, now);
        assert_eq!(t.verify(&t.issue(3, 6)?)?.user_id, 3);
        Ok(())
    }

    #[test]
    fn alg_none_is_refused() {
        let t = tokens();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(br#"{"sub":"1","sid":1,"iat":0,"exp":99999999999}"#);
        assert!(t.verify(&format!("{header}.{payload}.")).is_err());
    }

    /// A token signed with the right secret but naming another algorithm
    /// (HS512; RS256, the "key confusion" attack where the HMAC key is
    /// passed off as a public key) is refused: only HS256 is accepted.
    #[test]
    fn other_algorithms_are_refused_even_with_the_right_key() {
        use jsonwebtoken::{encode, Header};
        let secret = b"0123456789abcdef0123456789abcdef";
        let t = tokens();
        let claims = Claims {
            sub: "1".into(),
            sid: 1,
            iat: 0,
            exp: 99_999_999_999,
            iat_ms: None,
        };
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("HS512 token");
        assert!(matches!(t.verify(&hs512), Err(DomainError::InvalidToken)));
        // RS256 in the header, HMAC-SHA256 over the same bytes as signature.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = b64.encode(serde_json::to_vec(&claims).expect("claims"));
        let signing_input = format!("{header}.{payload}");
        let sig = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
            mac.update(signing_input.as_bytes());
            b64.encode(mac.finalize().into_bytes())
        };
        assert!(t.verify(&format!("{signing_input}.{sig}")).is_err());
    }

    /// A genuine token that is not valid yet (`nbf` in the future) is refused.
    #[test]
    fn not_yet_valid_tokens_are_refused() {
        use jsonwebtoken::{encode, Header};
        #[derive(serde::Serialize)]
        struct WithNbf {
            sub: String,
            sid: u64,
            iat: u64,
            exp: u64,
            nbf: u64,
        }
        let now = (now_ms() / 1000) as u64;
        let t = tokens();
        let token = encode(
            &Header::new(Algorithm::HS256),
            &WithNbf {
                sub: "1".into(),
                sid: 1,
                iat: now,
                exp: now + 600,
                nbf: now + 300,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .expect("token");
        assert!(t.verify(&token).is_err());
    }
}
