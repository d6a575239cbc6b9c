//! MQTT CONNECT authentication: the broker asks, chatsvc answers with its
//! access tokens. Where chatsvc meets the broker, beside [`crate::downlink`]
//! (pushes) and [`crate::mqtt_sessions`] (persistent sessions).

use mqchat_broker::{Authenticator, Principal, Refusal};

use crate::domain::Tokens;

/// MQTT CONNECT check: username = user id, password = an access token of
/// that user.
impl Authenticator for Tokens {
    fn authenticate(&self, username: &str, password: &[u8]) -> Result<Principal, Refusal> {
        let token = std::str::from_utf8(password).map_err(|_| Refusal::BadCredentials)?;
        let caller = self.verify(token).map_err(|_| Refusal::BadCredentials)?;
        // The token is genuine but names another user: not "bad password",
        // but an identity this token does not grant.
        if username != caller.user_id.to_string() {
            return Err(Refusal::NotAuthorized);
        }
        Ok(Principal {
            user_id: caller.user_id,
            session_id: caller.session_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::DomainError;

    #[test]
    fn mqtt_username_must_match_subject() -> Result<(), DomainError> {
        let t = Tokens::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let token = t.issue(42, 7)?;
        assert!(t.authenticate("42", token.as_bytes()).is_ok());
        assert_eq!(
            t.authenticate("43", token.as_bytes()),
            Err(Refusal::NotAuthorized)
        );
        assert_eq!(
            t.authenticate("42", b"garbage"),
            Err(Refusal::BadCredentials)
        );
        Ok(())
    }
}
