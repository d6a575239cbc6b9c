//! Per-user ordering of what a node delivers.
//!
//! Each user's stored events carry a gap-free inbox cursor. One node
//! publishes its commits in order and NATS keeps a publisher's order, but
//! two nodes committing for one user publish independently, so a node may
//! get cursor 8 (from node B) before 7 (from node A). The node keeps, per
//! user with a local connection, the last cursor it delivered; an event
//! past a gap is held until the gap fills or `reorder_wait` passes (or
//! `max_held` events wait), then everything held goes out in cursor order
//! and the client, seeing the gap, heals it by sync (client-sdk's
//! `sequencer`). An event at or below the last delivered cursor came too
//! late: the client has it from that sync already, so it is dropped.
//! Ephemeral events (no cursor) pass straight through.
//!
//! Local commits go through the same sequencer, so a node's own pushes and
//! the ones from other nodes interleave in cursor order. Deliveries happen
//! under the sequencer's lock, so the notify thread and the bus task can't
//! reorder each other's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{wire, Cluster};
use crate::domain::outbox::EVENTS;
use crate::metrics;

#[derive(Default)]
struct UserSeq {
    /// Last cursor delivered.
    last: u64,
    /// Events past a gap, by cursor.
    held: BTreeMap<u64, Bytes>,
    /// When the oldest held event arrived.
    since: Option<Instant>,
}

pub(crate) struct Sequencer {
    users: Mutex<HashMap<u64, UserSeq>>,
    wait: Duration,
    max_held: usize,
}

/// What to push now, in order.
type Ready = Vec<(u64, &'static str, Bytes)>;

impl Sequencer {
    pub fn new(wait: Duration, max_held: usize) -> Self {
        Sequencer {
            users: Mutex::new(HashMap::new()),
            wait,
            max_held: max_held.max(1),
        }
    }

    /// Orders `items` into what can go out now and pushes that with `push`,
    /// under the lock. `online` says whether the user has a local
    /// connection (no state is kept for the others: the broker would drop
    /// their pushes anyway).
    pub fn deliver<'a, I>(
        &self,
        items: I,
        online: impl Fn(u64) -> bool,
        push: impl FnOnce(Ready) -> usize,
    ) -> usize
    where
        I: IntoIterator<Item = (u64, &'a str, Bytes)>,
    {
        let now = Instant::now();
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut ready = Ready::new();
        for (user, subtopic, event) in items {
            if subtopic != EVENTS {
                match static_subtopic(subtopic) {
                    Some(subtopic) if online(user) => ready.push((user, subtopic, event)),
                    Some(_) => {}
                    None => tracing::warn!(subtopic, "push to an unknown subtopic dropped"),
                }
                continue;
            }
            let Some(cursor) = wire::cursor_of(&event) else {
                if online(user) {
                    ready.push((user, EVENTS, event));
                }
                continue;
            };
            let state = match users.get_mut(&user) {
                Some(s) => s,
                None if online(user) => {
                    // The first event seen: nothing to order it against.
                    users.insert(
                        user,
                        UserSeq {
                            last: cursor,
                            ..Default::default()
                        },
                    );
                    ready.push((user, EVENTS, event));
                    continue;
                }
                None => continue,
            };
            if cursor <= state.last || state.held.contains_key(&cursor) {
                ::metrics::counter!(metrics::CLUSTER_EVENTS_LATE_TOTAL).increment(1);
            } else if cursor == state.last + 1 {
                state.last = cursor;
                ready.push((user, EVENTS, event));
                release_contiguous(user, state, &mut ready);
            } else {
                state.held.insert(cursor, event);
                state.since.get_or_insert(now);
                if state.held.len() >= self.max_held {
                    release_all(user, state, &mut ready);
                }
            }
        }
        if ready.is_empty() {
            0
        } else {
            push(ready)
        }
    }

    /// Gives up on gaps older than the wait: delivers what was held behind
    /// them.
    pub fn release_expired(&self, push: impl FnOnce(Ready) -> usize) {
        self.release_expired_at(Instant::now(), push);
    }

    fn release_expired_at(&self, now: Instant, push: impl FnOnce(Ready) -> usize) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let mut ready = Ready::new();
        for (user, state) in users.iter_mut() {
            if state
                .since
                .is_some_and(|t| now.duration_since(t) >= self.wait)
            {
                ::metrics::counter!(metrics::CLUSTER_GAPS_RELEASED_TOTAL).increment(1);
                release_all(*user, state, &mut ready);
            }
        }
        if !ready.is_empty() {
            push(ready);
        }
    }

    /// The user's last local connection closed.
    pub fn forget(&self, user: u64) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&user);
    }
}

fn release_contiguous(user: u64, state: &mut UserSeq, ready: &mut Ready) {
    while let Some(event) = state.held.remove(&(state.last + 1)) {
        state.last += 1;
        ready.push((user, EVENTS, event));
    }
    if state.held.is_empty() {
        state.since = None;
    }
}

fn release_all(user: u64, state: &mut UserSeq, ready: &mut Ready) {
    for (cursor, event) in std::mem::take(&mut state.held) {
        state.last = cursor;
        ready.push((user, EVENTS, event));
    }
    state.since = None;
}

/// The broker's pushes take `&'static str` subtopics in batches: ours are
/// a closed set (a frame from the bus names one of them, or is dropped).
fn static_subtopic(s: &str) -> Option<&'static str> {
    use crate::domain::outbox::{PRESENCE, TYPING};
    match s {
        PRESENCE => Some(PRESENCE),
        TYPING => Some(TYPING),
        EVENTS => Some(EVENTS),
        _ => None,
    }
}

/// Releases expired gaps, a few times per wait.
pub(crate) fn start(cluster: &Cluster) {
    let cluster = cluster.clone();
    let period = (cluster.inner.settings.reorder_wait / 4).max(Duration::from_millis(5));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cluster.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let broker = &cluster.inner.broker;
            cluster
                .inner
                .sequencer
                .release_expired(|ready| broker.push_many(ready));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(cursor: u64) -> Bytes {
        Bytes::from(format!(r#"{{"type":"message.created","cursor":{cursor}}}"#))
    }

    fn run(s: &Sequencer, items: Vec<(u64, &str, Bytes)>) -> Vec<u64> {
        let mut out = Vec::new();
        s.deliver(
            items,
            |_| true,
            |ready| {
                out = ready
                    .iter()
                    .map(|(_, _, b)| wire::cursor_of(b).unwrap_or(0))
                    .collect();
                out.len()
            },
        );
        out
    }

    #[test]
    fn a_gap_is_held_until_filled_or_expired() {
        let s = Sequencer::new(Duration::from_millis(100), 10);
        assert_eq!(run(&s, vec![(1, EVENTS, ev(5))]), vec![5]);
        assert_eq!(run(&s, vec![(1, EVENTS, ev(7))]), Vec::<u64>::new());
        assert_eq!(run(&s, vec![(1, EVENTS, ev(6))]), vec![6, 7], "gap filled");
        assert_eq!(run(&s, vec![(1, EVENTS, ev(6))]), Vec::<u64>::new(), "late");
        assert_eq!(run(&s, vec![(1, EVENTS, ev(9))]), Vec::<u64>::new());
        let mut released = Vec::new();
        let held_at = Instant::now();
        s.release_expired_at(held_at, |r| {
            released = r.clone();
            0
        });
        assert!(released.is_empty(), "not yet");
        s.release_expired_at(held_at + Duration::from_millis(100), |r| {
            released = r.clone();
            0
        });
        assert_eq!(released.len(), 1);
        assert_eq!(
            run(&s, vec![(1, EVENTS, ev(8))]),
            Vec::<u64>::new(),
            "too late"
        );
        assert_eq!(run(&s, vec![(1, EVENTS, ev(10))]), vec![10]);
        // Ephemeral events pass; other users are independent.
        let typing = Bytes::from_static(br#"{"type":"typing"}"#);
        assert_eq!(
            run(&s, vec![(1, "typing", typing), (2, EVENTS, ev(3))]),
            vec![0, 3]
        );
    }

    #[test]
    fn too_many_held_go_out_at_once() {
        let s = Sequencer::new(Duration::from_secs(60), 3);
        run(&s, vec![(1, EVENTS, ev(1))]);
        assert_eq!(
            run(
                &s,
                vec![(1, EVENTS, ev(5)), (1, EVENTS, ev(3)), (1, EVENTS, ev(4))]
            ),
            vec![3, 4, 5]
        );
    }
}
