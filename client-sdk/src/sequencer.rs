//! `Sequencer`: merges pushed events and sync pages into one gap-free,
//! duplicate-free stream in cursor order.
//!
//! The push is only a notification; the store (read through sync) is the
//! truth. So the sequencer never holds events back waiting for a missing one:
//! an out-of-order push is dropped, and a sync from the last delivered cursor
//! reads it (and everything before it) from the store instead. The server
//! commits an event before it pushes it, so a sync *sent after* a push was
//! received always returns that push's event.
//!
//! It is pure (no I/O, no clock) so every interleaving can be tested; the
//! stream driver (`stream.rs`) feeds it and performs the syncs it asks for.

use crate::event::Event;
use crate::model::SyncPage;

/// The ordering state machine of an event stream.
///
/// Protocol for the owner:
/// 1. [`on_connected`](Self::on_connected) once the subscription is active
///    (pushes may have been missed while it was not);
/// 2. feed every pushed event to [`on_push`](Self::on_push);
/// 3. whenever [`start_sync`](Self::start_sync) returns `Some(after)`, fetch
///    `GET /v1/sync?after={after}` and hand the page to
///    [`on_sync_page`](Self::on_sync_page), or report
///    [`on_sync_failed`](Self::on_sync_failed). At most one sync is in flight.
///
/// Everything returned for delivery is in strictly increasing cursor order and
/// starts right after the cursor the sequencer was created with.
#[derive(Debug, Clone)]
pub struct Sequencer {
    /// Cursor of the last event handed out.
    last: u64,
    /// Highest cursor known to exist (seen in a push); `>= last`.
    target: u64,
    sync: SyncState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncState {
    /// Caught up as far as we know.
    Idle,
    /// A sync should be started.
    Needed,
    /// A sync page request is out. `known` is `target` when it was sent: the
    /// server must return at least up to there.
    InFlight { after: u64, known: u64 },
}

/// What to do with one pushed event.
// Deliver is the outcome of nearly every push and is handed on at once:
// boxing the event would add an allocation per push to save a few hundred
// bytes of a value that never lives in a collection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// Next in order (or outside the inbox: no cursor): hand it out now.
    Deliver(Event),
    /// Already handed out; drop it.
    Duplicate,
    /// Ahead of a gap: dropped, a sync will read it from the store.
    Deferred,
}

impl Sequencer {
    /// A sequencer that hands out events with cursors after `last`
    /// (0 = from the beginning).
    pub fn new(last: u64) -> Sequencer {
        Sequencer {
            last,
            target: last,
            sync: SyncState::Idle,
        }
    }

    /// Cursor of the last event handed out.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Nothing known to be missing and no sync wanted or running.
    pub fn is_synced(&self) -> bool {
        self.sync == SyncState::Idle && self.target <= self.last
    }

    /// The subscription is (again) active: anything pushed while it was not
    /// is lost, so a full sync is needed. Forgets a sync in flight; its
    /// answer, if it still comes, is harmless (see [`on_sync_page`](Self::on_sync_page)).
    pub fn on_connected(&mut self) {
        self.sync = SyncState::Needed;
    }

    /// Orders one pushed event.
    pub fn on_push(&mut self, event: Event) -> PushOutcome {
        let Some(cursor) = event.cursor() else {
            return PushOutcome::Deliver(event);
        };
        if cursor <= self.last {
            return PushOutcome::Duplicate;
        }
        // `cursor > last`, so `last + 1` cannot overflow.
        if cursor == self.last + 1 {
            self.last = cursor;
            self.target = self.target.max(cursor);
            return PushOutcome::Deliver(event);
        }
        self.target = self.target.max(cursor);
        if self.sync == SyncState::Idle {
            self.sync = SyncState::Needed;
        }
        PushOutcome::Deferred
    }

    /// If a sync page should be fetched now, marks it in flight and returns
    /// the `after` cursor to fetch from.
    pub fn start_sync(&mut self) -> Option<u64> {
        if self.sync != SyncState::Needed {
            return None;
        }
        self.sync = SyncState::InFlight {
            after: self.last,
            known: self.target,
        };
        Some(self.last)
    }

    /// The sync in flight failed; it will be started again.
    pub fn on_sync_failed(&mut self) {
        if let SyncState::InFlight { .. } = self.sync {
            self.sync = SyncState::Needed;
        }
    }

    /// Applies a sync page and returns the events to hand out, in order.
    ///
    /// The page is the truth: its events are taken even if it skips cursors
    /// (logged, as the server promises none), and its `cursor` moves `last`
    /// forward. Events already handed out are dropped. A page that arrives
    /// when no sync is in flight (a stale answer) still hands out its new
    /// events, since they are valid, but does not change what to sync next.
    pub fn on_sync_page(&mut self, page: SyncPage) -> Vec<Event> {
        let mut out = Vec::with_capacity(page.events.len());
        for event in page.events {
            match event.cursor() {
                None => out.push(event),
                Some(cursor) if cursor <= self.last => {}
                Some(cursor) => {
                    if cursor != self.last + 1 {
                        tracing::warn!(
                            last = self.last,
                            cursor,
                            "sync skipped inbox cursors; following the store"
                        );
                    }
                    self.last = cursor;
                    out.push(event);
                }
            }
        }
        self.last = self.last.max(page.cursor);
        self.target = self.target.max(self.last);

        if let SyncState::InFlight { after, known } = self.sync {
            let progressed = self.last > after;
            self.sync = if page.has_more && progressed {
                SyncState::Needed
            } else {
                if page.has_more {
                    tracing::warn!(after, "sync page has_more without progress; stopping");
                }
                if self.target <= self.last {
                    SyncState::Idle
                } else if self.target > known {
                    // Pushes arrived while the request was out; its snapshot
                    // may predate their commit. Ask again.
                    SyncState::Needed
                } else {
                    // The request was sent after these pushes arrived, yet the
                    // store does not have them. The store is the truth; a later
                    // push will notice the gap again if they show up.
                    tracing::warn!(
                        last = self.last,
                        target = self.target,
                        "pushed events missing from sync; following the store"
                    );
                    self.target = self.last;
                    SyncState::Idle
                }
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn ev(cursor: u64) -> Event {
        Event::Other(json!({"type": "test", "cursor": cursor}))
    }

    fn page(cursors: std::ops::RangeInclusive<u64>, has_more: bool) -> SyncPage {
        let events: Vec<Event> = cursors.clone().map(ev).collect();
        let cursor = events.last().and_then(Event::cursor).unwrap_or(0);
        SyncPage {
            events,
            cursor,
            has_more,
        }
    }

    fn empty_page(cursor: u64) -> SyncPage {
        SyncPage {
            events: vec![],
            cursor,
            has_more: false,
        }
    }

    fn cursors(events: &[Event]) -> Vec<u64> {
        events.iter().filter_map(Event::cursor).collect()
    }

    #[test]
    fn in_order_pushes_are_delivered() {
        let mut s = Sequencer::new(0);
        for c in 1..=3 {
            assert_eq!(s.on_push(ev(c)), PushOutcome::Deliver(ev(c)));
        }
        assert_eq!(s.last(), 3);
        assert!(s.is_synced());
        assert_eq!(s.start_sync(), None);
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut s = Sequencer::new(5);
        assert_eq!(s.on_push(ev(5)), PushOutcome::Duplicate);
        assert_eq!(s.on_push(ev(1)), PushOutcome::Duplicate);
        assert_eq!(s.on_push(ev(6)), PushOutcome::Deliver(ev(6)));
        assert_eq!(s.on_push(ev(6)), PushOutcome::Duplicate);
        assert!(s.is_synced());
    }

    #[test]
    fn gap_triggers_sync_that_fills_it_in_order() {
        let mut s = Sequencer::new(2);
        assert_eq!(s.on_push(ev(5)), PushOutcome::Deferred);
        assert!(!s.is_synced());
        assert_eq!(s.start_sync(), Some(2));
        assert_eq!(s.start_sync(), None, "one sync at a time");
        let out = s.on_sync_page(page(3..=5, false));
        assert_eq!(cursors(&out), [3, 4, 5]);
        assert!(s.is_synced());
        assert_eq!(s.on_push(ev(5)), PushOutcome::Duplicate);
    }

    #[test]
    fn next_push_during_sync_is_delivered_and_page_deduplicated() {
        let mut s = Sequencer::new(0);
        s.on_connected();
        assert_eq!(s.start_sync(), Some(0));
        assert_eq!(s.on_push(ev(1)), PushOutcome::Deliver(ev(1)));
        assert_eq!(s.on_push(ev(3)), PushOutcome::Deferred);
        let out = s.on_sync_page(page(1..=3, false));
        assert_eq!(cursors(&out), [2, 3]);
        assert!(s.is_synced());
    }

    #[test]
    fn push_newer_than_the_sync_snapshot_triggers_another_sync() {
        let mut s = Sequencer::new(0);
        assert_eq!(s.on_push(ev(2)), PushOutcome::Deferred);
        assert_eq!(s.start_sync(), Some(0));
        // While the request is out, events 3 and 4 commit; only 4's push arrives.
        assert_eq!(s.on_push(ev(4)), PushOutcome::Deferred);
        // The answer was snapshotted before 3 and 4 were committed.
        let out = s.on_sync_page(page(1..=2, false));
        assert_eq!(cursors(&out), [1, 2]);
        assert!(!s.is_synced());
        assert_eq!(s.start_sync(), Some(2));
        let out = s.on_sync_page(page(3..=4, false));
        assert_eq!(cursors(&out), [3, 4]);
        assert!(s.is_synced());
    }

    #[test]
    fn pages_until_has_more_is_false() {
        let mut s = Sequencer::new(0);
        s.on_connected();
        assert_eq!(s.start_sync(), Some(0));
        assert_eq!(cursors(&s.on_sync_page(page(1..=2, true))), [1, 2]);
        assert!(!s.is_synced());
        assert_eq!(s.start_sync(), Some(2));
        assert_eq!(cursors(&s.on_sync_page(page(3..=4, true))), [3, 4]);
        assert_eq!(s.start_sync(), Some(4));
        assert_eq!(cursors(&s.on_sync_page(page(5..=5, false))), [5]);
        assert!(s.is_synced());
        assert_eq!(s.start_sync(), None);
    }

    #[test]
    fn reconnect_syncs_even_without_a_known_gap() {
        let mut s = Sequencer::new(7);
        s.on_connected();
        assert!(!s.is_synced());
        assert_eq!(s.start_sync(), Some(7));
        assert!(s.on_sync_page(empty_page(7)).is_empty());
        assert!(s.is_synced());
    }

    #[test]
    fn reconnect_while_syncing_restarts_from_last() {
        let mut s = Sequencer::new(0);
        s.on_connected();
        assert_eq!(s.start_sync(), Some(0));
        assert_eq!(cursors(&s.on_sync_page(page(1..=2, true))), [1, 2]);
        assert_eq!(s.start_sync(), Some(2));
        s.on_connected();
        assert_eq!(s.start_sync(), Some(2));
        assert_eq!(cursors(&s.on_sync_page(page(3..=3, false))), [3]);
        assert!(s.is_synced());
    }

    #[test]
    fn failed_sync_is_retried_from_the_same_cursor() {
        let mut s = Sequencer::new(3);
        assert_eq!(s.on_push(ev(6)), PushOutcome::Deferred);
        assert_eq!(s.start_sync(), Some(3));
        s.on_sync_failed();
        assert!(!s.is_synced());
        assert_eq!(s.start_sync(), Some(3));
        assert_eq!(cursors(&s.on_sync_page(page(4..=6, false))), [4, 5, 6]);
        assert!(s.is_synced());
    }

    #[test]
    fn failure_report_without_sync_in_flight_is_ignored() {
        let mut s = Sequencer::new(0);
        s.on_sync_failed();
        assert!(s.is_synced());
        assert_eq!(s.start_sync(), None);
    }

    #[test]
    fn store_missing_a_pushed_event_does_not_loop_forever() {
        let mut s = Sequencer::new(0);
        assert_eq!(s.on_push(ev(3)), PushOutcome::Deferred);
        assert_eq!(s.start_sync(), Some(0));
        // The request was sent after the push, but the store stops at 1.
        assert_eq!(cursors(&s.on_sync_page(page(1..=1, false))), [1]);
        assert!(s.is_synced(), "gives up: the store is the truth");
        // A later push notices the gap again, and a sync then fills it.
        assert_eq!(s.on_push(ev(4)), PushOutcome::Deferred);
        assert_eq!(s.start_sync(), Some(1));
        assert_eq!(cursors(&s.on_sync_page(page(2..=4, false))), [2, 3, 4]);
        assert!(s.is_synced());
    }

    #[test]
    fn has_more_without_progress_stops() {
        let mut s = Sequencer::new(4);
        s.on_connected();
        assert_eq!(s.start_sync(), Some(4));
        let stuck = SyncPage {
            events: vec![],
            cursor: 4,
            has_more: true,
        };
        assert!(s.on_sync_page(stuck).is_empty());
        assert!(s.is_synced());
        assert_eq!(s.start_sync(), None);
    }

    #[test]
    fn store_skipping_cursors_is_followed() {
        let mut s = Sequencer::new(1);
        s.on_connected();
        assert_eq!(s.start_sync(), Some(1));
        let skipping = SyncPage {
            events: vec![ev(2), ev(5), ev(3), ev(6)],
            cursor: 6,
            has_more: false,
        };
        // 3 comes after 5 in the page: out of order, dropped.
        assert_eq!(cursors(&s.on_sync_page(skipping)), [2, 5, 6]);
        assert_eq!(s.last(), 6);
        assert!(s.is_synced());
    }

    #[test]
    fn page_cursor_moves_last_forward() {
        let mut s = Sequencer::new(0);
        s.on_connected();
        assert_eq!(s.start_sync(), Some(0));
        let page = SyncPage {
            events: vec![ev(1)],
            cursor: 3,
            has_more: false,
        };
        assert_eq!(cursors(&s.on_sync_page(page)), [1]);
        assert_eq!(s.last(), 3);
        assert_eq!(s.on_push(ev(3)), PushOutcome::Duplicate);
        assert_eq!(s.on_push(ev(4)), PushOutcome::Deliver(ev(4)));
    }

    #[test]
    fn stale_page_delivers_but_keeps_sync_state() {
        let mut s = Sequencer::new(0);
        assert_eq!(cursors(&s.on_sync_page(page(1..=2, true))), [1, 2]);
        assert!(s.is_synced(), "no sync was asked for");
        assert_eq!(s.start_sync(), None);
    }

    #[test]
    fn events_without_cursor_bypass_ordering() {
        let mut s = Sequencer::new(9);
        let typing = Event::Other(json!({"type": "typing", "from": 3}));
        assert_eq!(s.on_push(typing.clone()), PushOutcome::Deliver(typing));
        assert_eq!(s.last(), 9);
        assert!(s.is_synced());
    }

    #[test]
    fn typed_social_events_are_ordered_like_messages() -> Result<(), serde_json::Error> {
        let typed = |raw: serde_json::Value| serde_json::from_value::<Event>(raw);
        let receipt = typed(json!({
            "type": "receipt.read", "cursor": 2, "conversation_id": 1, "user_id": 5, "seq": 1
        }))?;
        let friend = typed(json!({"type": "friend.removed", "cursor": 3, "user_id": 5}))?;
        let block =
            typed(json!({"type": "block.updated", "cursor": 4, "user_id": 5, "blocked": true}))?;
        let typing = typed(json!({"type": "typing", "conversation_id": 1, "user_id": 5}))?;
        let mut s = Sequencer::new(1);
        // 3 and 4 arrive before 2: held back for a sync, not delivered early.
        assert_eq!(s.on_push(friend.clone()), PushOutcome::Deferred);
        assert_eq!(s.on_push(block.clone()), PushOutcome::Deferred);
        assert_eq!(s.start_sync(), Some(1));
        // An ephemeral push goes straight out, even with a sync in flight.
        assert_eq!(s.on_push(typing.clone()), PushOutcome::Deliver(typing));
        let out = s.on_sync_page(SyncPage {
            events: vec![receipt.clone(), friend.clone(), block.clone()],
            cursor: 4,
            has_more: false,
        });
        assert_eq!(out, [receipt, friend.clone(), block]);
        assert!(s.is_synced());
        assert_eq!(s.on_push(friend), PushOutcome::Duplicate);
        Ok(())
    }

    #[test]
    fn cursor_at_u64_max_does_not_overflow() {
        let mut s = Sequencer::new(u64::MAX);
        assert_eq!(s.on_push(ev(u64::MAX)), PushOutcome::Duplicate);
        let mut s = Sequencer::new(u64::MAX - 1);
        assert_eq!(s.on_push(ev(u64::MAX)), PushOutcome::Deliver(ev(u64::MAX)));
    }

    /// A store of inbox events, a lossy network that drops, duplicates and
    /// reorders pushes, sync answers snapshotted when the request is sent but
    /// delivered later, and disconnects: whatever the interleaving, the output
    /// is exactly 1..=N in order, and the sequencer never claims to be synced
    /// while a push it saw is still undelivered.
    #[test]
    fn random_interleavings_deliver_every_event_once_in_order() {
        for seed in 0..300u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let total: u64 = rng.gen_range(0..60);
            let limit: u64 = rng.gen_range(1..8);
            let mut committed = 0u64;
            let mut network: Vec<u64> = Vec::new();
            let mut in_flight: Option<SyncPage> = None;
            let mut seq = Sequencer::new(0);
            let mut out: Vec<u64> = Vec::new();
            let mut max_pushed = 0u64;

            let snapshot = |after: u64, committed: u64| {
                let end = committed.min(after + limit);
                SyncPage {
                    events: (after + 1..=end).map(ev).collect(),
                    cursor: end.max(after),
                    has_more: end < committed,
                }
            };

            seq.on_connected();
            for _step in 0..400 {
                match rng.gen_range(0..6) {
                    0 if committed < total => {
                        // Commit first, then (maybe) push, maybe twice.
                        committed += 1;
                        if rng.gen_bool(0.8) {
                            network.push(committed);
                        }
                        if rng.gen_bool(0.1) {
                            network.push(committed);
                        }
                    }
                    1 | 2 if !network.is_empty() => {
                        let i = rng.gen_range(0..network.len());
                        let cursor = network.swap_remove(i);
                        max_pushed = max_pushed.max(cursor);
                        if let PushOutcome::Deliver(e) = seq.on_push(ev(cursor)) {
                            out.extend(e.cursor());
                        }
                    }
                    3 if in_flight.is_none() => {
                        if let Some(after) = seq.start_sync() {
                            in_flight = Some(snapshot(after, committed));
                        }
                    }
                    4 => {
                        if let Some(p) = in_flight.take() {
                            if rng.gen_bool(0.1) {
                                seq.on_sync_failed();
                            } else {
                                out.extend(cursors(&seq.on_sync_page(p)));
                            }
                        }
                    }
                    5 if rng.gen_bool(0.05) => {
                        // Disconnect: pushes in the air and the sync are lost.
                        network.clear();
                        in_flight = None;
                        seq.on_connected();
                    }
                    _ => {}
                }
                // Liveness: "synced" never hides a gap a push revealed.
                if seq.is_synced() {
                    assert!(seq.last() >= max_pushed, "seed {seed}: synced with a gap");
                }
            }
            // Quiesce: everything committed, reconnect, sync to the end.
            committed = total;
            network.clear();
            seq.on_connected();
            while let Some(after) = seq.start_sync() {
                out.extend(cursors(&seq.on_sync_page(snapshot(after, committed))));
            }
            assert!(seq.is_synced(), "seed {seed}");
            let expected: Vec<u64> = (1..=total).collect();
            assert_eq!(out, expected, "seed {seed}");
        }
    }
}
