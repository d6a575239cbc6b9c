//! Persistent MQTT sessions: what the broker's `SessionStore` keeps
//! (`crate::mqtt_sessions`). A session's queue is its user's inbox; the row
//! holds where in it the session is, its filters, and when it expires.

/// A session as [`open_mqtt_session`] found or made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRow {
    /// An unexpired session was resumed.
    pub present: bool,
    /// Its filters, as JSON (`[]` for a new one).
    pub subscriptions: String,
    pub acked: u64,
    pub sent: u64,
    /// When it was last written (ms); a new one: now.
    pub seen_at: i64,
    /// The user's newest inbox cursor.
    pub head: u64,
}

/// Cursors of one session to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorsRow {
    pub user_id: u64,
    pub client_id: String,
    pub acked: u64,
    pub sent: u64,
    pub expires_at: i64,
}

super::operations! {
    mqtt;
    /// Resumes the session `(user_id, client_id)` unless `clean_start` or
    /// it expired by `now` (both delete it), else makes one starting at the
    /// user's newest cursor; either way it now expires at `expires_at`.
    /// Making one when the user has `max_per_user` (0: no cap) deletes the
    /// user's sessions seen least recently to make room.
    write fn open_mqtt_session(user_id: u64, client_id: &str, clean_start: bool, expires_at: i64, now: i64, max_per_user: usize) -> OpenedRow;
    /// Whether the user has a session with this id (expired or not).
    read fn mqtt_session_exists(user_id: u64, client_id: &str) -> bool;
    /// Deletes the session; whether there was one.
    write fn end_mqtt_session(user_id: u64, client_id: &str) -> bool;
    /// Replaces the session's filters (JSON); nothing if it is gone.
    write fn save_mqtt_subscriptions(user_id: u64, client_id: &str, subscriptions: &str, now: i64) -> ();
    /// Records each session's cursors (never moving one backwards) and its
    /// new expiry; sessions that are gone are skipped.
    write fn save_mqtt_cursors(rows: &[CursorsRow], now: i64) -> ();
    /// Deletes up to `limit` sessions expired by `now`; returns how many.
    write fn purge_mqtt_sessions(now: i64, limit: usize) -> u64;
}
