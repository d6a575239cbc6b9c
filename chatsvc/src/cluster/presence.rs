//! Presence across nodes.
//!
//! Every node keeps the same view: which nodes hold a connection of which
//! user. A node publishes a delta on `mqchat.presence` when a user's
//! first connection on it opens or its last one closes, a heartbeat every
//! `heartbeat`, and its full state when asked (a node that starts or comes
//! back to the bus asks everyone; a receiver that misses a delta, seen by
//! the node's delta count, asks that node). A node not heard from for
//! `lease` is dead: its users are removed.
//!
//! The domain's presence logic runs on every node over this view, so
//! `/v1/friends/online` is right everywhere; exactly one node announces
//! each change: the node where the first connection opened or the last one
//! closed (after the debounce), or, for a dead or departed node, the live
//! node with the smallest id. A user goes offline for friends at most
//! `lease` + one heartbeat + the debounce after their node dies.
//!
//! While the bus is down nobody is expired (the others can't be heard,
//! which says nothing about them); when it comes back every node resends
//! its state and leases start over.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::wire::PresenceMsg;
use super::{downlink, Cluster, ClusterError, PRESENCE_SUBJECT};
use crate::domain::presence::Seen;

/// Users per state message: a NATS message is at most 1 MiB by default.
const STATE_CHUNK: usize = 40_000;

struct Node {
    users: HashSet<u64>,
    /// Last delta counted.
    seq: u64,
    heard: Instant,
    /// A state arriving in chunks.
    pending: Option<HashSet<u64>>,
}

#[derive(Default)]
struct State {
    local: HashSet<u64>,
    local_seq: u64,
    nodes: HashMap<Arc<str>, Node>,
    /// Remote nodes holding each user.
    remote: HashMap<u64, u32>,
}

/// This node's view of who is connected where.
pub struct View {
    me: Arc<str>,
    state: Mutex<State>,
    seen: mpsc::Sender<Seen>,
}

/// What applying a message asks of the caller.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    seen: Vec<Seen>,
    /// Ask this node for its state.
    want: Option<Arc<str>>,
    /// Send our state (someone asked).
    send_state: bool,
}

impl State {
    fn online(&self, user: u64) -> bool {
        self.local.contains(&user) || self.remote.contains_key(&user)
    }

    fn add_remote(&mut self, user: u64) {
        *self.remote.entry(user).or_default() += 1;
    }

    fn remove_remote(&mut self, user: u64) {
        if let Some(n) = self.remote.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                self.remote.remove(&user);
            }
        }
    }

    /// Replaces a node's users; transitions go to `seen`.
    fn set_node_users(
        &mut self,
        node: &Arc<str>,
        users: HashSet<u64>,
        announce: bool,
        seen: &mut Vec<Seen>,
    ) {
        let old = self
            .nodes
            .get_mut(node)
            .map(|n| std::mem::replace(&mut n.users, users.clone()))
            .unwrap_or_default();
        for &u in old.difference(&users) {
            self.remove_remote(u);
            if !self.online(u) {
                seen.push(Seen {
                    user: u,
                    online: false,
                    announce,
                });
            }
        }
        for &u in users.difference(&old) {
            let was = self.online(u);
            self.add_remote(u);
            if !was {
                seen.push(Seen {
                    user: u,
                    online: true,
                    announce: false,
                });
            }
        }
    }

    /// Forgets nodes that are gone (dead, departed, or restarted under the
    /// same id); their users' offline changes are announced by the
    /// smallest node left, so by exactly one node.
    fn drop_nodes(&mut self, me: &str, gone: &[Arc<str>], seen: &mut Vec<Seen>) {
        let announce = self
            .nodes
            .keys()
            .filter(|n| !gone.contains(n))
            .all(|n| me < &**n);
        for node in gone {
            if self.nodes.contains_key(node) {
                self.set_node_users(node, HashSet::new(), announce, seen);
                self.nodes.remove(node);
            }
        }
    }

    /// A node's counter went back: it was restarted under the same id, and
    /// what its previous run held is gone with it.
    fn restarted(&mut self, me: &str, node: &str, seq: u64, seen: &mut Vec<Seen>) {
        let Some((k, n)) = self.nodes.get_key_value(node) else {
            return;
        };
        if seq < n.seq {
            info!(node, "node restarted");
            let k = k.clone();
            self.drop_nodes(me, &[k], seen);
        }
    }
}

impl View {
    pub(crate) fn new(me: Arc<str>, seen: mpsc::Sender<Seen>) -> Self {
        View {
            me,
            state: Mutex::new(State::default()),
            seen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Does another node hold a connection of this user?
    pub fn is_remote(&self, user: u64) -> bool {
        self.lock().remote.contains_key(&user)
    }

    /// Live nodes other than this one.
    pub fn peers(&self) -> usize {
        self.lock().nodes.len()
    }

    /// A local first-opened / last-closed; returns the delta to publish.
    fn local_change(&self, user: u64, online: bool) -> (PresenceMsg, Option<Seen>) {
        let mut s = self.lock();
        let was = s.online(user);
        if online {
            s.local.insert(user);
        } else {
            s.local.remove(&user);
        }
        s.local_seq += 1;
        let now = s.online(user);
        let delta = PresenceMsg::Delta {
            node: self.me.to_string(),
            seq: s.local_seq,
            user,
            online,
        };
        let seen = (was != now).then_some(Seen {
            user,
            online: now,
            announce: true,
        });
        (delta, seen)
    }

    /// This node's state, in chunks.
    fn local_state(&self) -> Vec<PresenceMsg> {
        let s = self.lock();
        let users: Vec<u64> = s.local.iter().copied().collect();
        let mut chunks: Vec<Vec<u64>> = users.chunks(STATE_CHUNK).map(<[u64]>::to_vec).collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, users)| PresenceMsg::State {
                node: self.me.to_string(),
                seq: s.local_seq,
                users,
                first: i == 0,
                last: i + 1 == n,
            })
            .collect()
    }

    fn heartbeat(&self) -> PresenceMsg {
        PresenceMsg::Heartbeat {
            node: self.me.to_string(),
            seq: self.lock().local_seq,
        }
    }

    fn apply(&self, msg: PresenceMsg, now: Instant) -> Outcome {
        let mut out = Outcome::default();
        let mut s = self.lock();
        let node_of = |s: &mut State, node: &str| -> (Arc<str>, bool) {
            if let Some((k, _)) = s.nodes.get_key_value(node) {
                return (k.clone(), false);
            }
            let k: Arc<str> = Arc::from(node);
            s.nodes.insert(
                k.clone(),
                Node {
                    users: HashSet::new(),
                    seq: 0,
                    heard: now,
                    pending: None,
                },
            );
            (k, true)
        };
        match msg {
            PresenceMsg::Delta {
                node,
                seq,
                user,
                online,
            } => {
                s.restarted(&self.me, &node, seq, &mut out.seen);
                let (node, new) = node_of(&mut s, &node);
                let Some(n) = s.nodes.get_mut(&node) else {
                    return out;
                };
                if new || seq != n.seq + 1 {
                    out.want = Some(node.clone());
                }
                n.seq = seq;
                n.heard = now;
                let has = n.users.contains(&user);
                if online && !has {
                    n.users.insert(user);
                    let was = s.online(user);
                    s.add_remote(user);
                    if !was {
                        out.seen.push(Seen {
                            user,
                            online: true,
                            announce: false,
                        });
                    }
                } else if !online && has {
                    n.users.remove(&user);
                    s.remove_remote(user);
                    if !s.online(user) {
                        // The node where it closed announces.
                        out.seen.push(Seen {
                            user,
                            online: false,
                            announce: false,
                        });
                    }
                }
            }
            PresenceMsg::Heartbeat { node, seq } => {
                s.restarted(&self.me, &node, seq, &mut out.seen);
                let (node, new) = node_of(&mut s, &node);
                if let Some(n) = s.nodes.get_mut(&node) {
                    if new || seq != n.seq {
                        out.want = Some(node.clone());
                    }
                    n.heard = now;
                }
            }
            PresenceMsg::State {
                node,
                seq,
                users,
                first,
                last,
            } => {
                if first {
                    s.restarted(&self.me, &node, seq, &mut out.seen);
                }
                let (node, _) = node_of(&mut s, &node);
                let Some(n) = s.nodes.get_mut(&node) else {
                    return out;
                };
                n.heard = now;
                if first {
                    n.pending = Some(HashSet::new());
                }
                let Some(pending) = n.pending.as_mut() else {
                    // A later chunk of a state we did not see begin.
                    out.want = Some(node.clone());
                    return out;
                };
                pending.extend(users);
                if last {
                    let users = n.pending.take().unwrap_or_default();
                    n.seq = seq;
                    s.set_node_users(&node, users, false, &mut out.seen);
                }
            }
            PresenceMsg::Want { from, node } => {
                if from != *self.me && node.as_deref().is_none_or(|n| n == &*self.me) {
                    out.send_state = true;
                }
            }
            PresenceMsg::Bye { node } => {
                if let Some((k, _)) = s.nodes.get_key_value(node.as_str()) {
                    let k = k.clone();
                    s.drop_nodes(&self.me, &[k], &mut out.seen);
                }
            }
        }
        out
    }

    /// Forgets nodes not heard from for `lease`.
    fn expire(&self, now: Instant, lease: std::time::Duration) -> Vec<Seen> {
        let mut s = self.lock();
        let dead: Vec<Arc<str>> = s
            .nodes
            .iter()
            .filter(|(_, n)| now.duration_since(n.heard) >= lease)
            .map(|(k, _)| k.clone())
            .collect();
        let mut seen = Vec::new();
        for node in &dead {
            warn!(node = %node, "node missed its lease: its users are offline");
        }
        s.drop_nodes(&self.me, &dead, &mut seen);
        seen
    }

    /// The bus came back: nobody could be heard meanwhile, so every lease
    /// starts over.
    fn restart_leases(&self, now: Instant) {
        for n in self.lock().nodes.values_mut() {
            n.heard = now;
        }
    }

    async fn tell(&self, seen: Vec<Seen>) {
        for s in seen {
            if self.seen.send(s).await.is_err() {
                return;
            }
        }
    }
}

fn encode(msg: &PresenceMsg) -> Option<bytes::Bytes> {
    match serde_json::to_vec(msg) {
        Ok(v) => Some(v.into()),
        Err(e) => {
            warn!(error = %e, "encoding a presence message");
            None
        }
    }
}

impl Cluster {
    fn publish_presence(&self, msg: &PresenceMsg) {
        if let Some(b) = encode(msg) {
            self.publish(PRESENCE_SUBJECT.to_owned(), b);
        }
    }

    fn publish_state(&self) {
        for msg in self.inner.view.local_state() {
            self.publish_presence(&msg);
        }
    }
}

/// Subscribes to the presence subject and runs the presence task.
pub(crate) async fn start(cluster: &Cluster) -> Result<(), ClusterError> {
    let inner = &cluster.inner;
    let mut bus = inner
        .client
        .subscribe(PRESENCE_SUBJECT)
        .await
        .map_err(|source| ClusterError::Subscribe {
            subject: PRESENCE_SUBJECT,
            source,
        })?;
    let mut local = inner.broker.presence_changes();
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let inner = &cluster.inner;
        let view = &inner.view;
        let mut tick = tokio::time::interval(inner.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = inner.shutdown.cancelled() => break,
                change = local.recv() => match change {
                    Ok(c) => {
                        // Subscribed before the delta goes out: a node that
                        // sees the delta publishes to a subscribed subject.
                        if c.online {
                            downlink::subscribe_user(&cluster, c.user_id).await;
                        } else {
                            downlink::unsubscribe_user(&cluster, c.user_id);
                        }
                        let (delta, seen) = view.local_change(c.user_id, c.online);
                        cluster.publish_presence(&delta);
                        view.tell(seen.into_iter().collect()).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Rebuilt from the broker below; peers get our state.
                        warn!(missed = n, "local presence changes dropped");
                        resync_local(&cluster).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                msg = bus.next() => {
                    let Some(msg) = msg else { break };
                    let Ok(msg) = serde_json::from_slice::<PresenceMsg>(&msg.payload) else {
                        warn!("unreadable presence message dropped");
                        continue;
                    };
                    let out = view.apply(msg, Instant::now());
                    if let Some(node) = out.want {
                        cluster.publish_presence(&PresenceMsg::Want {
                            from: inner.node.to_string(),
                            node: Some(node.to_string()),
                        });
                    }
                    if out.send_state {
                        cluster.publish_state();
                    }
                    view.tell(out.seen).await;
                }
                _ = tick.tick() => {
                    if cluster.is_up() {
                        cluster.publish_presence(&view.heartbeat());
                        let seen = view.expire(Instant::now(), inner.settings.lease);
                        view.tell(seen).await;
                    }
                    ::metrics::gauge!(crate::metrics::CLUSTER_NODES).set((view.peers() + 1) as f64);
                }
                _ = inner.reconnected.notified() => {
                    view.restart_leases(Instant::now());
                    cluster.publish_state();
                    cluster.publish_presence(&PresenceMsg::Want {
                        from: inner.node.to_string(),
                        node: None,
                    });
                }
            }
        }
        // Leaving: the others drop this node's users now rather than after
        // the lease. Sent directly: the publish queue stops with us.
        if let Some(b) = encode(&PresenceMsg::Bye {
            node: inner.node.to_string(),
        }) {
            let _ = inner.client.publish(PRESENCE_SUBJECT, b).await;
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), inner.client.flush()).await;
        }
        info!(node = %inner.node, "left the cluster");
    });
    Ok(())
}

/// After missed local changes: the broker's live users are the truth.
async fn resync_local(cluster: &Cluster) {
    let live: HashSet<u64> = cluster.inner.broker.online_users().into_iter().collect();
    let known: HashSet<u64> = cluster.inner.view.lock().local.clone();
    for &u in live.difference(&known) {
        downlink::subscribe_user(cluster, u).await;
        let (_, seen) = cluster.inner.view.local_change(u, true);
        cluster.inner.view.tell(seen.into_iter().collect()).await;
    }
    for &u in known.difference(&live) {
        downlink::unsubscribe_user(cluster, u);
        let (_, seen) = cluster.inner.view.local_change(u, false);
        cluster.inner.view.tell(seen.into_iter().collect()).await;
    }
    cluster.publish_state();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(me: &str) -> (View, mpsc::Receiver<Seen>) {
        let (tx, rx) = mpsc::channel(64);
        (View::new(Arc::from(me), tx), rx)
    }

    fn delta(node: &str, seq: u64, user: u64, online: bool) -> PresenceMsg {
        PresenceMsg::Delta {
            node: node.into(),
            seq,
            user,
            online,
        }
    }

    #[test]
    fn online_while_any_node_holds_the_user() {
        let (v, _rx) = view("b");
        let t = Instant::now();
        let out = v.apply(delta("a", 1, 7, true), t);
        assert_eq!(
            out.want.as_deref(),
            Some("a"),
            "a new node is asked for its state"
        );
        assert_eq!(
            out.seen,
            vec![Seen {
                user: 7,
                online: true,
                announce: false
            }]
        );
        let (_, seen) = v.local_change(7, true);
        assert_eq!(seen, None, "already online elsewhere");
        let out = v.apply(delta("a", 2, 7, false), t);
        assert!(out.seen.is_empty(), "still here");
        assert_eq!(out.want, None);
        let (_, seen) = v.local_change(7, false);
        assert_eq!(
            seen,
            Some(Seen {
                user: 7,
                online: false,
                announce: true
            }),
            "the node where the last one closed announces"
        );
        assert!(
            v.apply(delta("a", 4, 8, true), t).want.is_some(),
            "missed delta 3"
        );
    }

    #[test]
    fn a_dead_node_is_announced_by_the_smallest_live_node() {
        let t = Instant::now();
        let lease = std::time::Duration::from_secs(3);
        for (me, announces) in [("a", true), ("c", false)] {
            let (v, _rx) = view(me);
            v.apply(delta("b", 1, 7, true), t);
            v.apply(
                PresenceMsg::Heartbeat {
                    node: if me == "a" { "c" } else { "a" }.into(),
                    seq: 0,
                },
                t,
            );
            v.apply(
                PresenceMsg::Heartbeat {
                    node: if me == "a" { "c" } else { "a" }.into(),
                    seq: 0,
                },
                t + lease,
            );
            assert!(v.is_remote(7));
            let seen = v.expire(t + lease, lease);
            assert_eq!(
                seen,
                vec![Seen {
                    user: 7,
                    online: false,
                    announce: announces
                }],
                "{me}"
            );
            assert!(!v.is_remote(7));
        }
    }

    #[test]
    fn nodes_dying_together_are_announced_by_one_survivor() {
        let t = Instant::now();
        let lease = std::time::Duration::from_secs(3);
        let (v, _rx) = view("c");
        v.apply(delta("a", 1, 7, true), t);
        v.apply(delta("b", 1, 8, true), t);
        let seen = v.expire(t + lease, lease);
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|s| s.announce), "c is the smallest left");
    }

    #[test]
    fn a_node_restarted_under_its_id_loses_what_it_held() {
        let t = Instant::now();
        let (v, _rx) = view("a");
        v.apply(delta("b", 1, 7, true), t);
        v.apply(delta("b", 2, 8, true), t);
        let out = v.apply(
            PresenceMsg::State {
                node: "b".into(),
                seq: 0,
                users: vec![],
                first: true,
                last: true,
            },
            t,
        );
        assert_eq!(out.seen.len(), 2);
        assert!(out.seen.iter().all(|s| !s.online && s.announce));
        assert!(!v.is_remote(7));
        let out = v.apply(delta("b", 1, 9, true), t);
        assert!(v.is_remote(9), "{out:?}");
    }

    #[test]
    fn a_state_replaces_what_was_known_of_a_node() {
        let (v, _rx) = view("b");
        let t = Instant::now();
        v.apply(delta("a", 1, 7, true), t);
        let out = v.apply(
            PresenceMsg::State {
                node: "a".into(),
                seq: 5,
                users: vec![8],
                first: true,
                last: true,
            },
            t,
        );
        assert_eq!(out.seen.len(), 2, "7 gone, 8 came");
        assert!(!v.is_remote(7));
        assert!(v.is_remote(8));
        assert_eq!(
            v.apply(delta("a", 6, 9, true), t).want,
            None,
            "in step again"
        );
        let out = v.apply(PresenceMsg::Bye { node: "a".into() }, t);
        assert_eq!(out.seen.len(), 2);
        assert!(out.seen.iter().all(|s| !s.online && s.announce));
    }
}
