//! How the gateway asks its owner (chatsvc) whether a CONNECT may proceed.

/// Who a connection belongs to, once its CONNECT is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The user id (the CONNECT username).
    pub user_id: u64,
    /// The login session the access token was issued for; logout of that
    /// session disconnects every connection that presented one of its tokens.
    pub session_id: u64,
}

/// Why a CONNECT was refused. Maps to CONNACK return codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Missing, malformed, expired or revoked credentials
    /// (3.1.1: 0x04 bad user name or password; 5: 0x86).
    #[error("bad user name or password")]
    BadCredentials,
    /// Valid credentials that do not grant this identity, e.g. a token of
    /// user A presented with username B (3.1.1: 0x05; 5: 0x87).
    #[error("not authorized")]
    NotAuthorized,
}

/// Checks MQTT credentials. Implemented by chatsvc over its JWT keys and
/// session store; must be cheap (it runs on the connection task).
pub trait Authenticator: Send + Sync + 'static {
    /// `username` is the CONNECT user name, `password` the CONNECT password.
    fn authenticate(&self, username: &str, password: &[u8]) -> Result<Principal, Refusal>;
}
