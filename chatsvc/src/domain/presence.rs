//! Presence: what friends are told about a user being online.
//!
//! The broker reports every first-connection-opened and
//! last-connection-closed. Going online is announced at once; going offline
//! only after the user has stayed offline for the debounce time, so a
//! flapping mobile link does not spam friends. Presence is ephemeral: pushed
//! on `users/{id}/presence`, not stored in the inbox; the last-seen time is
//! stored.
//!
//! In a cluster every node keeps this state for the whole cluster (fed by
//! `cluster::presence` with cluster-wide first-opened / last-closed changes),
//! so `/v1/friends/online` is right on every node, but only one node
//! announces each change ([`Seen::announce`]).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::Ephemeral;
use super::outbox::Outbox;
use super::{now_ms, Chat};
use crate::store::social;

#[derive(Debug, Default)]
struct State {
    /// Friends have been told this user is online.
    announced: bool,
    /// Bumped on every change, so a delayed offline can tell it is stale.
    generation: u64,
    /// Live per the broker.
    connected: bool,
}

/// Presence as announced to friends.
#[derive(Debug, Default)]
pub struct Tracker {
    users: Mutex<HashMap<u64, State>>,
}

impl Tracker {
    /// Online as friends see it (announced, and not yet announced offline).
    pub fn is_online(&self, user: u64) -> bool {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user)
            .is_some_and(|s| s.announced)
    }

    /// Records a change; returns whether to announce online now, or the
    /// generation to check after the debounce for an offline.
    fn change(&self, user: u64, online: bool) -> Change {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let state = users.entry(user).or_default();
        state.generation += 1;
        state.connected = online;
        if online {
            if state.announced {
                Change::Nothing
            } else {
                state.announced = true;
                Change::AnnounceOnline
            }
        } else {
            Change::OfflineAfterDebounce(state.generation)
        }
    }

    /// After the debounce: still offline with no change since? Then forget
    /// the user and announce offline.
    fn settle_offline(&self, user: u64, generation: u64) -> bool {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        match users.get(&user) {
            Some(s) if s.generation == generation && !s.connected => {
                let announced = s.announced;
                users.remove(&user);
                announced
            }
            _ => false,
        }
    }
}

/// A change in whether a user has any connection (on this node, or in the
/// cluster when clustered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub user: u64,
    pub online: bool,
    /// Whether this node tells friends (and stores the last-seen time);
    /// the other nodes of a cluster only keep their view right.
    pub announce: bool,
}

enum Change {
    Nothing,
    AnnounceOnline,
    OfflineAfterDebounce(u64),
}

impl Chat {
    /// Consumes changes (from the broker, or the cluster's view) until
    /// shutdown.
    pub async fn run_presence(
        self,
        mut changes: mpsc::Receiver<Seen>,
        shutdown: CancellationToken,
    ) {
        loop {
            let Seen {
                user,
                online,
                announce,
            } = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = changes.recv() => match c {
                    Some(c) => c,
                    None => return,
                },
            };
            match self.presence.change(user, online) {
                Change::Nothing => {}
                Change::AnnounceOnline if announce => self.announce(user, true, None).await,
                Change::AnnounceOnline => {}
                Change::OfflineAfterDebounce(generation) => {
                    let chat = self.clone();
                    let debounce = self.limits.presence_debounce;
                    tokio::spawn(async move {
                        tokio::time::sleep(debounce).await;
                        if chat.presence.settle_offline(user, generation) && announce {
                            let seen = now_ms();
                            let store = chat.store.clone();
                            if let Err(e) = store
                                .write(move |c| social::set_last_seen(c, user, seen))
                                .await
                            {
                                tracing::warn!(user, error = %e, "storing last-seen time");
                            }
                            chat.announce(user, false, Some(seen)).await;
                        }
                    });
                }
            }
        }
    }

    /// Pushes the user's presence to each friend (blocked users are never
    /// friends, so they hear nothing).
    async fn announce(&self, user: u64, online: bool, last_seen: Option<i64>) {
        let friends = match self.store.read(move |c| social::friend_ids(c, user)).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(user, error = %e, "presence: loading friends");
                return;
            }
        };
        let mut out = Outbox::default();
        out.ephemeral(
            friends,
            &Ephemeral::Presence {
                user_id: user,
                online,
                last_seen,
            },
        );
        if !out.is_empty() {
            let downlink = self.downlink.clone();
            let _ = tokio::task::spawn_blocking(move || out.push(&*downlink)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flapping_is_debounced() {
        let t = Tracker::default();
        assert!(matches!(t.change(1, true), Change::AnnounceOnline));
        let Change::OfflineAfterDebounce(g1) = t.change(1, false) else {
            panic!("expected offline")
        };
        assert!(
            matches!(t.change(1, true), Change::Nothing),
            "back before the debounce: no event"
        );
        assert!(!t.settle_offline(1, g1), "stale offline is dropped");
        assert!(t.is_online(1));
        let Change::OfflineAfterDebounce(g2) = t.change(1, false) else {
            panic!("expected offline")
        };
        assert!(t.settle_offline(1, g2));
        assert!(!t.is_online(1));
    }
}
