//! Login sessions and their refresh tokens (stored as SHA-256 hashes).

/// Outcome of presenting a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// Valid: the session now holds the new token.
    Rotated { session_id: u64, user_id: u64 },
    /// A token already rotated away was presented again: the session has
    /// been revoked (the token leaked, or a client raced itself).
    Reused { session_id: u64, user_id: u64 },
    /// Unknown, expired or revoked.
    Invalid,
}

super::operations! {
    sessions;
    write fn create(user_id: u64, refresh_hash: &[u8], now: i64, expires_at: i64) -> u64;
    write fn rotate(old_hash: &[u8], new_hash: &[u8], now: i64, expires_at: i64) -> Rotation;
    /// Revokes a session; returns its user, or `None` if unknown.
    write fn revoke(session_id: u64, now: i64) -> Option<u64>;
    /// Revokes every live session of a user; returns their ids.
    write fn revoke_all(user_id: u64, now: i64) -> Vec<u64>;
    /// The highest session id, 0 if none (sessions are never deleted, so no
    /// session above it existed when this database was copied or restored).
    read fn last_id() -> u64;
    /// Sessions revoked at or after `since` (to rebuild the in-memory deny list
    /// after a restart: older ones can no longer have live access tokens).
    read fn revoked_since(since: i64) -> Vec<(u64, i64)>;
}
