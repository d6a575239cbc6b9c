//! What the broker's integration tests share.

use mqchat_broker::{Authenticator, Principal, Refusal};

/// Username = user id, any password.
pub struct AnyUser;

impl Authenticator for AnyUser {
    fn authenticate(&self, username: &str, _password: &[u8]) -> Result<Principal, Refusal> {
        let user_id = username.parse().map_err(|_| Refusal::BadCredentials)?;
        Ok(Principal {
            user_id,
            session_id: 1,
        })
    }
}
