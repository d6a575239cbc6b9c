//! Persistent sessions, kept by the owner's store (chatsvc implements
//! [`SessionStore`]).
//!
//! A persistent session (MQTT 3.1.1 clean session 0, or MQTT 5 with a
//! Session Expiry Interval) is a row in the store: its subscriptions, the
//! newest inbox cursor it has acknowledged (`acked`), the newest it was
//! sent (`sent`), and when it expires. Its queue is the user's inbox: on
//! resume the connection replays the events after `acked` from the store,
//! a page at a time ([`SessionStore::replay`]), then carries on with live
//! pushes, so nothing is queued in memory while the client is away and the
//! queue is as durable as the messages.
//!
//! Acknowledgements are written in batches (`Dirty`, flushed by
//! `Broker::start`'s session task every `Settings::session_flush`) and at
//! disconnect, so a PUBACK costs no write of its own. After a crash the
//! last batch may be lost: the events acknowledged since are delivered
//! again, with DUP=1 (at least once).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

/// A boxed future, as the trait's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failed store operation; the connection is refused (CONNACK server
/// unavailable) or, once connected, the operation is retried or logged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session store: {0}")]
pub struct SessionStoreError(pub String);

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFilter {
    pub filter: String,
    /// 0 or 1 (the gateway grants at most QoS 1).
    pub qos: u8,
    /// The MQTT 5 subscription identifier.
    pub id: Option<usize>,
}

/// What [`SessionStore::open`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSession {
    /// An unexpired session of this client id was resumed (CONNACK session
    /// present); `false`: a new, empty one was made.
    pub present: bool,
    pub subscriptions: Vec<StoredFilter>,
    /// Newest cursor acknowledged (a new session: the user's newest cursor
    /// when it was made, so it starts with what comes next).
    pub acked: u64,
    /// Newest cursor written to the client (redeliveries up to it carry DUP=1).
    pub sent: u64,
    /// The user's newest inbox cursor now.
    pub head: u64,
    /// Seconds since the session was last seen connected (0 if new).
    pub away_secs: u64,
}

/// Cursors of a session, written in batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCursors {
    pub acked: u64,
    pub sent: u64,
    /// Seconds the session outlives its connection (its expiry interval).
    pub expiry_secs: u32,
    /// Still connected: the session expires [`SESSION_GRACE_SECS`] later
    /// than `expiry_secs` from now, and the next touch pushes that out again.
    pub connected: bool,
}

/// How much longer than its expiry interval a connected session's row is
/// kept from its last write: two touches (`server::SESSION_TOUCH`), so a
/// live session never expires, and a crashed node's sessions do.
pub const SESSION_GRACE_SECS: u64 = 120;

/// The user and the user-namespaced client id of a session.
pub type SessionKey = (u64, Arc<str>);

/// How the broker reaches the store for persistent sessions. Implemented by
/// chatsvc over its store (both backends); every method may be called from
/// any connection task.
pub trait SessionStore: Send + Sync + 'static {
    /// Resumes the session of `client_id` (namespaced) unless `clean_start`
    /// or it expired, else makes a new one; either way it now expires
    /// `expiry_secs` after its connection ends (longer while connected,
    /// until the next touch). At most `max_per_user` sessions are kept per
    /// user: making one past that evicts the least recently seen.
    fn open(
        &self,
        user_id: u64,
        client_id: &str,
        clean_start: bool,
        expiry_secs: u32,
        max_per_user: usize,
    ) -> BoxFuture<'_, Result<OpenedSession, SessionStoreError>>;

    /// Ends (deletes) the session of `client_id`, if there is one: a clean
    /// session with that id started, or the session's expiry was 0.
    fn discard(
        &self,
        user_id: u64,
        client_id: &str,
    ) -> BoxFuture<'_, Result<(), SessionStoreError>>;

    /// Replaces the session's subscriptions.
    fn save_subscriptions(
        &self,
        user_id: u64,
        client_id: &str,
        filters: Vec<StoredFilter>,
    ) -> BoxFuture<'_, Result<(), SessionStoreError>>;

    /// Records cursors (never moving them backwards) and pushes each
    /// session's expiry out; unknown sessions are skipped.
    fn save_cursors(
        &self,
        batch: Vec<(SessionKey, SessionCursors)>,
    ) -> BoxFuture<'_, Result<(), SessionStoreError>>;

    /// Up to `limit` of the user's stored events after `after`, in cursor
    /// order, each as the payload a push on `users/{id}/events` carries.
    fn replay(
        &self,
        user_id: u64,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(u64, Bytes)>, SessionStoreError>>;

    /// Deletes up to `limit` expired sessions; returns how many.
    fn purge_expired(&self, limit: usize) -> BoxFuture<'_, Result<u64, SessionStoreError>>;

    /// The inbox cursor a pushed payload carries, `None` for an ephemeral
    /// one (presence, typing, replies).
    fn cursor_of(&self, payload: &[u8]) -> Option<u64>;

    /// The event a resumed session gets instead of a backlog over the
    /// bound: the events after `after` up to `until` are to be read with
    /// sync. `reason` is `backlog` or `age`.
    fn sync_required(&self, after: u64, until: u64, reason: &str) -> Bytes;
}

/// Cursors of live persistent sessions waiting to be written, and when
/// each was last written (so an idle one is touched before it could
/// expire while connected).
#[derive(Default)]
pub(crate) struct Dirty {
    sessions: Mutex<HashMap<SessionKey, Entry>>,
}

struct Entry {
    cursors: SessionCursors,
    dirty: bool,
    /// The connection that noted it last: a connection taken over must not
    /// forget the entry of the one that took its session.
    owner: usize,
}

impl Dirty {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live session's cursors changed (or it connected), on the
    /// connection `owner`.
    pub(crate) fn note(&self, key: &SessionKey, owner: usize, cursors: SessionCursors) {
        let mut map = self.map();
        match map.get_mut(key) {
            Some(e) if e.cursors == cursors && e.owner == owner => {}
            Some(e) => {
                e.cursors = cursors;
                e.dirty = true;
                e.owner = owner;
            }
            None => {
                map.insert(
                    key.clone(),
                    Entry {
                        cursors,
                        dirty: true,
                        owner,
                    },
                );
            }
        }
    }

    /// The session's connection `owner` ended: it writes its last cursors
    /// itself, not the next batch.
    pub(crate) fn forget(&self, key: &SessionKey, owner: usize) {
        let mut map = self.map();
        if map.get(key).is_some_and(|e| e.owner == owner) {
            map.remove(key);
        }
    }

    /// What to write now: the changed sessions, or (`all`) every live one.
    pub(crate) fn take(&self, all: bool) -> Vec<(SessionKey, SessionCursors)> {
        let mut map = self.map();
        map.iter_mut()
            .filter(|(_, e)| all || e.dirty)
            .map(|(k, e)| {
                e.dirty = false;
                (k.clone(), e.cursors)
            })
            .collect()
    }
}

/// Writes live sessions' cursors every `every`, touches every live session
/// every `touch` (so none expires while connected), and purges expired
/// sessions, until `shutdown`.
pub(crate) async fn run_flusher(
    store: Arc<dyn SessionStore>,
    dirty: Arc<Dirty>,
    every: Duration,
    touch: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_touch = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let all = last_touch.elapsed() >= touch;
        if all {
            last_touch = tokio::time::Instant::now();
        }
        let batch = dirty.take(all);
        if !batch.is_empty() {
            if let Err(e) = store.save_cursors(batch).await {
                tracing::warn!(error = %e, "saving MQTT session cursors failed");
            }
        }
        if all {
            // Bounded passes: a backlog of expired sessions goes over
            // several touches rather than in one long write.
            match store.purge_expired(1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired MQTT sessions deleted"),
                Err(e) => tracing::warn!(error = %e, "purging expired MQTT sessions failed"),
            }
        }
    }
    // Shutdown: what the connections acknowledged last.
    let batch = dirty.take(false);
    if !batch.is_empty() {
        let _ = store.save_cursors(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_sessions_are_written_unless_all_are_touched() {
        let d = Dirty::default();
        let key: SessionKey = (1, "1|a".into());
        let c = |acked| SessionCursors {
            acked,
            sent: acked,
            expiry_secs: 60,
            connected: true,
        };
        d.note(&key, 1, c(1));
        assert_eq!(d.take(false).len(), 1);
        assert!(d.take(false).is_empty(), "written already");
        d.note(&key, 1, c(1));
        assert!(d.take(false).is_empty(), "unchanged");
        assert_eq!(d.take(true).len(), 1, "a touch writes every live one");
        // Taken over by connection 2: connection 1's end leaves it.
        d.note(&key, 2, c(2));
        d.forget(&key, 1);
        assert_eq!(d.take(false).len(), 1);
        d.forget(&key, 2);
        assert!(d.take(true).is_empty());
    }
}
