//! Who is connected: presence and the ability to end a user's connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rumqttd::protocol::{PublishProperties, QoS};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::mailbox::Mailbox;

/// A change in a user's online state: first connection opened, or last one closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    pub user_id: u64,
    pub online: bool,
}

/// A connection accepted with a client id: another node of a cluster
/// closes that user's connection with the same id (a takeover across nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAccepted {
    pub user_id: u64,
    /// The user-namespaced client id: the same on every node.
    pub client_id: Arc<str>,
}

/// Why the server ended a connection; sent as the MQTT 5 DISCONNECT reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// The login session was ended (logout, password change).
    SessionEnded,
    /// The server is shutting down.
    ServerShutdown,
    /// Another connection of the user took over its client id.
    TakenOver,
}

struct Conn {
    session_id: u64,
    /// The (user-namespaced) client id.
    client_id: Arc<str>,
    /// Where the connection's live deliveries go (`None`: it takes none).
    mailbox: Option<Arc<Mailbox>>,
    kick: CancellationToken,
    reason: Arc<Mutex<Option<KickReason>>>,
}

/// Registry of live connections, keyed by user.
pub(crate) struct Registry {
    users: Mutex<HashMap<u64, HashMap<u64, Conn>>>,
    next_id: AtomicU64,
    changes: broadcast::Sender<PresenceChange>,
    accepted: broadcast::Sender<ClientAccepted>,
}

/// Held by a connection task; unregisters on drop so that presence is right
/// however the task ends.
pub(crate) struct Registration<'a> {
    registry: &'a Registry,
    user_id: u64,
    conn_id: u64,
    pub(crate) kick: CancellationToken,
    reason: Arc<Mutex<Option<KickReason>>>,
}

impl Registration<'_> {
    pub(crate) fn kick_reason(&self) -> Option<KickReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Registry {
    pub(crate) fn new() -> Self {
        let (changes, _) = broadcast::channel(4096);
        let (accepted, _) = broadcast::channel(4096);
        Registry {
            users: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            changes,
            accepted,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<PresenceChange> {
        self.changes.subscribe()
    }

    pub(crate) fn subscribe_accepted(&self) -> broadcast::Receiver<ClientAccepted> {
        self.accepted.subscribe()
    }

    /// Registers a connection. A connection that had this client id before
    /// is told to close: taken over (MQTT 5: DISCONNECT 0x8E).
    pub(crate) fn register(
        &self,
        user_id: u64,
        session_id: u64,
        client_id: Arc<str>,
        mailbox: Option<Arc<Mailbox>>,
    ) -> Registration<'_> {
        let conn_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        let first = {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let conns = users.entry(user_id).or_default();
            for old in conns.values() {
                if old.client_id == client_id {
                    old.kick_for(KickReason::TakenOver);
                }
            }
            // Nobody listening (a single node) costs one atomic load.
            if self.accepted.receiver_count() > 0 {
                let _ = self.accepted.send(ClientAccepted {
                    user_id,
                    client_id: client_id.clone(),
                });
            }
            conns.insert(
                conn_id,
                Conn {
                    session_id,
                    client_id,
                    mailbox,
                    kick: kick.clone(),
                    reason: reason.clone(),
                },
            );
            conns.len() == 1
        };
        if first {
            // Kept up to date here rather than counted at scrape time, so
            // a scrape costs the same however many users are online.
            metrics::gauge!(crate::metrics::ONLINE_USERS).increment(1.0);
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

    /// Hands publishes, in order, to the mailboxes of the connections of the
    /// user each is addressed to (`users/{id}/...`); each mailbox keeps what
    /// its filters match. One lock for the whole batch.
    pub(crate) fn deliver<'a, I>(&self, publishes: I)
    where
        I: IntoIterator<Item = (&'a Bytes, &'a Bytes, Option<&'a PublishProperties>, QoS)>,
    {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, payload, properties, qos) in publishes {
            let Some(conns) = addressee(topic).and_then(|user| users.get(&user)) else {
                continue;
            };
            for mailbox in conns.values().filter_map(|c| c.mailbox.as_ref()) {
                mailbox.offer(topic, payload, properties, qos);
            }
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
            metrics::gauge!(crate::metrics::ONLINE_USERS).decrement(1.0);
            let _ = self.changes.send(PresenceChange {
                user_id,
                online: false,
            });
        }
    }

    /// Whether `user_id` has a live connection with this (namespaced)
    /// client id: a new one with the same id takes it over.
    pub(crate) fn has_client(&self, user_id: u64, client_id: &str) -> bool {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user_id)
            .is_some_and(|conns| conns.values().any(|c| &*c.client_id == client_id))
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
                conn.kick_for(why);
                n += 1;
            }
        }
        n
    }

    /// Ends the user's connections with this (namespaced) client id, clean
    /// or persistent: another node accepted a connection with it.
    pub(crate) fn kick_client(&self, user_id: u64, client_id: &str) -> usize {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let Some(conns) = users.get(&user_id) else {
            return 0;
        };
        let mut n = 0;
        for conn in conns.values().filter(|c| &*c.client_id == client_id) {
            conn.kick_for(KickReason::TakenOver);
            n += 1;
        }
        n
    }

    pub(crate) fn kick_all(&self, why: KickReason) {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        for conn in users.values().flat_map(HashMap::values) {
            conn.kick_for(why);
        }
    }
}

impl Conn {
    fn kick_for(&self, why: KickReason) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.kick.cancel();
    }
}

/// The user a topic is addressed to: `users/{id}/...`, `id` in canonical
/// decimal (so that no other spelling reaches user `id`).
pub(crate) fn addressee(topic: &[u8]) -> Option<u64> {
    let rest = topic.strip_prefix(b"users/")?;
    let end = rest.iter().position(|&b| b == b'/')?;
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    let user: u64 = id.parse().ok()?;
    (user.to_string() == id).then_some(user)
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
        let a = reg.register(1, 10, "1|a".into(), None);
        let b = reg.register(1, 11, "1|b".into(), None);
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
        let a = reg.register(1, 10, "1|a".into(), None);
        let b = reg.register(1, 11, "1|b".into(), None);
        let other = reg.register(2, 10, "2|a".into(), None);
        assert_eq!(reg.kick(1, Some(10), KickReason::SessionEnded), 1);
        assert!(a.kick.is_cancelled());
        assert!(!b.kick.is_cancelled());
        assert!(!other.kick.is_cancelled());
        assert_eq!(a.kick_reason(), Some(KickReason::SessionEnded));
        assert_eq!(reg.kick(1, None, KickReason::SessionEnded), 2);
        assert!(b.kick.is_cancelled());
    }

    #[test]
    fn a_client_id_is_taken_over() {
        let reg = Registry::new();
        let mailbox = || Some(Arc::new(Mailbox::new(1024)));
        let old = reg.register(1, 10, "1|phone".into(), mailbox());
        let other_user = reg.register(2, 10, "2|phone".into(), mailbox());
        let other_id = reg.register(1, 10, "1|laptop".into(), mailbox());
        let new = reg.register(1, 11, "1|phone".into(), mailbox());
        assert!(old.kick.is_cancelled());
        assert_eq!(old.kick_reason(), Some(KickReason::TakenOver));
        for r in [&other_user, &other_id, &new] {
            assert!(!r.kick.is_cancelled());
        }
        // Persistent sessions' connections too.
        let first = reg.register(3, 10, "3|x".into(), mailbox());
        let _again = reg.register(3, 10, "3|x".into(), mailbox());
        assert!(first.kick.is_cancelled());
    }

    #[test]
    fn accepted_client_ids_are_reported_and_can_be_kicked() {
        let reg = Registry::new();
        let mut rx = reg.subscribe_accepted();
        let a = reg.register(1, 10, "1|phone".into(), None);
        let b = reg.register(1, 10, "1|laptop".into(), None);
        assert_eq!(
            rx.try_recv().ok(),
            Some(ClientAccepted {
                user_id: 1,
                client_id: "1|phone".into()
            })
        );
        assert_eq!(reg.kick_client(1, "1|phone"), 1);
        assert_eq!(reg.kick_client(2, "1|laptop"), 0, "another user's");
        assert_eq!(a.kick_reason(), Some(KickReason::TakenOver));
        assert!(!b.kick.is_cancelled());
    }

    #[test]
    fn deliveries_reach_only_the_addressed_users_mailboxes() {
        use crate::mailbox::Granted;
        use rumqttd::protocol::QoS;
        let reg = Registry::new();
        let mailbox = |user: u64| {
            let m = Arc::new(Mailbox::new(1 << 20));
            m.subscribe(Granted {
                filter: format!("users/{user}/#"),
                qos: QoS::AtLeastOnce,
                id: None,
            });
            m
        };
        let (one, two) = (mailbox(1), mailbox(2));
        let _a = reg.register(1, 1, "1|a".into(), Some(one.clone()));
        let _b = reg.register(2, 1, "2|a".into(), Some(two.clone()));
        let payload = Bytes::from_static(b"{}");
        let topics = [
            "users/1/events",
            "users/01/events",
            "users/3/events",
            "users/1",
        ]
        .map(|t| Bytes::from_static(t.as_bytes()));
        reg.deliver(topics.iter().map(|t| (t, &payload, None, QoS::AtLeastOnce)));
        let mut got = Vec::new();
        let _ = one.take(|d| {
            got.push(d.topic.clone());
            true
        });
        assert_eq!(got, vec![Bytes::from_static(b"users/1/events")]);
        assert!(two.is_empty());
    }

    #[test]
    fn addressee_is_the_canonical_user_id() {
        assert_eq!(addressee(b"users/12/events"), Some(12));
        assert_eq!(addressee(b"users/0/x"), Some(0));
        for t in [
            &b"users/012/x"[..],
            b"users/+1/x",
            b"users/1",
            b"user/1/x",
            b"users//x",
            b"users/1a/x",
        ] {
            assert_eq!(addressee(t), None, "{}", String::from_utf8_lossy(t));
        }
    }
}
