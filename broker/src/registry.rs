//! Who is connected: presence and the ability to end a user's connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A change in a user's online state: first connection opened, or last one closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    pub user_id: u64,
    pub online: bool,
}

/// Why the server ended a connection; sent as the MQTT 5 DISCONNECT reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// The login session was ended (logout, password change).
    SessionEnded,
    /// The server is shutting down.
    ServerShutdown,
}

struct Conn {
    session_id: u64,
    kick: CancellationToken,
    reason: std::sync::Arc<Mutex<Option<KickReason>>>,
}

/// Registry of live connections, keyed by user.
pub(crate) struct Registry {
    users: Mutex<HashMap<u64, HashMap<u64, Conn>>>,
    next_id: AtomicU64,
    changes: broadcast::Sender<PresenceChange>,
}

/// Held by a connection task; unregisters on drop so that presence is right
/// however the task ends.
pub(crate) struct Registration<'a> {
    registry: &'a Registry,
    user_id: u64,
    conn_id: u64,
    pub(crate) kick: CancellationToken,
    reason: std::sync::Arc<Mutex<Option<KickReason>>>,
}

impl Registration<'_> {
    pub(crate) fn kick_reason(&self) -> Option<KickReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Registry {
    pub(crate) fn new() -> Self {
        let (changes, _) = broadcast::channel(4096);
        Registry {
            users: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            changes,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<PresenceChange> {
        self.changes.subscribe()
    }

    pub(crate) fn register(&self, user_id: u64, session_id: u64) -> Registration<'_> {
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = CancellationToken::new();
        let reason = std::sync::Arc::new(Mutex::new(None));
        let first = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let conns = users.entry(user_id).or_default();
            conns.insert(
                conn_id,
                Conn {
                    session_id,
                    kick: kick.clone(),
                    reason: reason.clone(),
                },
            );
            conns.len() == 1
        };
        if first {
            let _ = self.changes.send(PresenceChange {
                user_id,
                online: true,
            });
        }
        Registration {
            registry: self,
            user_id,
            conn_id,
            kick,
            reason,
        }
    }

    fn unregister(&self, user_id: u64, conn_id: u64) {
        let last = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            match users.get_mut(&user_id) {
                Some(conns) => {
                    conns.remove(&conn_id);
                    let empty = conns.is_empty();
                    if empty {
                        users.remove(&user_id);
                    }
                    empty
                }
                None => false,
            }
        };
        if last {
            let _ = self.changes.send(PresenceChange {
                user_id,
                online: false,
            });
        }
    }

    pub(crate) fn is_online(&self, user_id: u64) -> bool {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&user_id)
    }

    pub(crate) fn online_users(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Ends the user's connections; only those of `session_id` when given.
    /// Returns how many were told to close.
    pub(crate) fn kick(&self, user_id: u64, session_id: Option<u64>, why: KickReason) -> usize {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let Some(conns) = users.get(&user_id) else {
            return 0;
        };
        let mut n = 0;
        for conn in conns.values() {
            if session_id.is_none_or(|s| s == conn.session_id) {
                *conn.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                conn.kick.cancel();
                n += 1;
            }
        }
        n
    }

    pub(crate) fn kick_all(&self, why: KickReason) {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        for conn in users.values().flat_map(HashMap::values) {
            *conn.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            conn.kick.cancel();
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.unregister(self.user_id, self.conn_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_first_and_last_connection() {
        let reg = Registry::new();
        let mut rx = reg.subscribe();
        let a = reg.register(1, 10);
        let b = reg.register(1, 11);
        assert!(reg.is_online(1));
        assert_eq!(
            rx.try_recv().ok(),
            Some(PresenceChange {
                user_id: 1,
                online: true
            })
        );
        assert!(rx.try_recv().is_err(), "second connection is not a change");
        drop(a);
        assert!(reg.is_online(1));
        drop(b);
        assert!(!reg.is_online(1));
        assert_eq!(
            rx.try_recv().ok(),
            Some(PresenceChange {
                user_id: 1,
                online: false
            })
        );
    }

    #[test]
    fn kick_by_session_only_hits_that_session() {
        let reg = Registry::new();
        let a = reg.register(1, 10);
        let b = reg.register(1, 11);
        let other = reg.register(2, 10);
        assert_eq!(reg.kick(1, Some(10), KickReason::SessionEnded), 1);
        assert!(a.kick.is_cancelled());
        assert!(!b.kick.is_cancelled());
        assert!(!other.kick.is_cancelled());
        assert_eq!(a.kick_reason(), Some(KickReason::SessionEnded));
        assert_eq!(reg.kick(1, None, KickReason::SessionEnded), 2);
        assert!(b.kick.is_cancelled());
    }
}
