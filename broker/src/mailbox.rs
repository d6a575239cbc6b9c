//! Live deliveries to a connection.
//!
//! A push (`Shared::publish_all`) goes straight from the publisher's thread
//! into the [`Mailbox`] of every connection of that user whose filters
//! match, with no router round and no thread hand-off (a rumqttd router
//! link cost ~13 KiB per connection, most of what an idle one cost). The
//! connection takes deliveries from its mailbox and does what a router
//! would: the delivery QoS, packet ids, the window of unacknowledged QoS 1
//! deliveries, MQTT 5 subscription identifiers.
//!
//! A persistent session's mailbox holds only live pushes; what it missed
//! while away is replayed from the store (`conn::persist`).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use rumqttd::protocol::{PublishProperties, QoS};
use tokio::sync::Notify;

/// A filter granted to a connection, with the QoS granted and its MQTT 5
/// subscription identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Granted {
    pub filter: String,
    pub qos: QoS,
    pub id: Option<usize>,
}

/// A publish for one connection: at the highest QoS of its filters that
/// match, with the identifiers of those filters.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    pub properties: Option<PublishProperties>,
}

/// The connection fell further behind than its mailbox holds; it has to
/// reconnect and catch up by sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflowed;

#[derive(Default)]
struct State {
    filters: Vec<Granted>,
    queue: VecDeque<Delivery>,
    /// Topic and payload bytes in `queue`.
    bytes: usize,
    overflowed: bool,
}

/// One connection's deliveries: filled by the publishers, taken by the
/// connection task.
pub(crate) struct Mailbox {
    state: Mutex<State>,
    ready: Notify,
    /// Most bytes queued before the connection counts as fallen behind.
    capacity: usize,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Mailbox {
        Mailbox {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces (same filter text) a subscription.
    pub(crate) fn subscribe(&self, granted: Granted) {
        let mut state = self.state();
        match state
            .filters
            .iter_mut()
            .find(|g| g.filter == granted.filter)
        {
            Some(slot) => *slot = granted,
            None => state.filters.push(granted),
        }
    }

    /// Removes a subscription; deliveries already queued stay.
    pub(crate) fn unsubscribe(&self, filter: &str) {
        let mut state = self.state();
        state.filters.retain(|g| g.filter != filter);
        if state.filters.is_empty() {
            state.filters = Vec::new();
        }
    }

    /// The filters granted, in the order they were first granted.
    pub(crate) fn filters(&self) -> Vec<Granted> {
        self.state().filters.clone()
    }

    /// The QoS and subscription identifiers a publish on `topic` is
    /// delivered with, `None` if no filter matches.
    pub(crate) fn grant(&self, topic: &[u8]) -> Option<(QoS, Vec<usize>)> {
        let name = std::str::from_utf8(topic).ok()?;
        grant_of(&self.state().filters, name)
    }

    /// Queues `topic` for the connection if any of its filters matches it.
    /// Publishers call this; it never waits for the connection.
    pub(crate) fn offer(
        &self,
        topic: &Bytes,
        payload: &Bytes,
        properties: Option<&PublishProperties>,
        max_qos: QoS,
    ) {
        let Ok(name) = std::str::from_utf8(topic) else {
            return;
        };
        let mut state = self.state();
        if state.overflowed {
            return;
        }
        let Some((qos, ids)) = grant_of(&state.filters, name) else {
            return;
        };
        // A will asks for at most its own QoS; pushes for QoS 1.
        let qos = if higher(qos, max_qos) == qos {
            max_qos
        } else {
            qos
        };
        let size = topic.len() + payload.len();
        if state.bytes + size > self.capacity && !state.queue.is_empty() {
            state.overflowed = true;
            state.queue = VecDeque::new();
            state.bytes = 0;
            drop(state);
            self.ready.notify_one();
            return;
        }
        let properties = if ids.is_empty() {
            properties.cloned()
        } else {
            let mut p = properties.cloned().unwrap_or_default();
            p.subscription_identifiers = ids;
            Some(p)
        };
        let was_empty = state.queue.is_empty();
        state.queue.push_back(Delivery {
            topic: topic.clone(),
            payload: payload.clone(),
            qos,
            properties,
        });
        state.bytes += size;
        drop(state);
        // The connection takes everything it can when woken, and what it
        // leaves (its window of unacknowledged deliveries is full) it takes
        // when a PUBACK frees a slot: only an empty mailbox needs a wake-up.
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Waits until something was queued (or the mailbox overflowed).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Hands queued deliveries to `deliver` in order while it accepts them:
    /// it returns false, leaving that delivery first in the queue, when it
    /// can take no more (the window of QoS 1 deliveries is full).
    pub(crate) fn take(
        &self,
        mut deliver: impl FnMut(&Delivery) -> bool,
    ) -> Result<(), Overflowed> {
        let mut state = self.state();
        if state.overflowed {
            return Err(Overflowed);
        }
        while let Some(front) = state.queue.front() {
            if !deliver(front) {
                break;
            }
            let size = front.topic.len() + front.payload.len();
            state.queue.pop_front();
            state.bytes -= size;
        }
        if state.queue.is_empty() && state.queue.capacity() > 8 {
            // A burst's queue is not kept by a connection gone quiet.
            state.queue = VecDeque::new();
        }
        Ok(())
    }

    /// Takes deliveries again after an overflow (whose queue was dropped):
    /// for a connection that gets what it lost from elsewhere, a persistent
    /// session's replay from the store.
    pub(crate) fn recover(&self) {
        self.state().overflowed = false;
    }

    /// Is anything waiting to be taken?
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.state().queue.is_empty()
    }
}

/// The highest QoS of the filters matching `name`, with their
/// subscription identifiers; `None` if none matches.
fn grant_of(filters: &[Granted], name: &str) -> Option<(QoS, Vec<usize>)> {
    let mut qos = None;
    let mut ids = Vec::new();
    for g in filters
        .iter()
        .filter(|g| rumqttd::protocol::matches(name, &g.filter))
    {
        qos = Some(match qos {
            Some(q) => higher(q, g.qos),
            None => g.qos,
        });
        ids.extend(g.id);
    }
    qos.map(|q| (q, ids))
}

fn higher(a: QoS, b: QoS) -> QoS {
    let rank = |q: QoS| q as u8;
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(filter: &str, qos: QoS, id: Option<usize>) -> Granted {
        Granted {
            filter: filter.to_owned(),
            qos,
            id,
        }
    }

    fn offer(m: &Mailbox, topic: &'static str, payload: &'static str) {
        m.offer(
            &Bytes::from_static(topic.as_bytes()),
            &Bytes::from_static(payload.as_bytes()),
            None,
            QoS::AtLeastOnce,
        );
    }

    fn taken(m: &Mailbox) -> Vec<(String, QoS, Vec<usize>)> {
        let mut out = Vec::new();
        m.take(|d| {
            out.push((
                String::from_utf8_lossy(&d.topic).into_owned(),
                d.qos,
                d.properties
                    .as_ref()
                    .map(|p| p.subscription_identifiers.clone())
                    .unwrap_or_default(),
            ));
            true
        })
        .unwrap_or_else(|_| panic!("overflowed"));
        out
    }

    #[test]
    fn only_matching_filters_get_deliveries() {
        let m = Mailbox::new(1 << 20);
        offer(&m, "users/1/events", "x");
        assert!(m.is_empty(), "no filter, no delivery");
        m.subscribe(granted("users/1/events", QoS::AtLeastOnce, None));
        offer(&m, "users/1/events", "a");
        offer(&m, "users/1/presence", "b");
        offer(&m, "users/12/events", "c");
        assert_eq!(
            taken(&m),
            vec![("users/1/events".to_owned(), QoS::AtLeastOnce, vec![])]
        );
        m.unsubscribe("users/1/events");
        offer(&m, "users/1/events", "d");
        assert!(m.is_empty());
    }

    #[test]
    fn overlapping_filters_deliver_once_at_the_highest_qos_with_every_id() {
        let m = Mailbox::new(1 << 20);
        m.subscribe(granted("users/1/#", QoS::AtMostOnce, Some(3)));
        m.subscribe(granted("users/1/+", QoS::AtLeastOnce, Some(5)));
        m.subscribe(granted("users/1/other", QoS::AtLeastOnce, Some(9)));
        offer(&m, "users/1/events", "a");
        assert_eq!(
            taken(&m),
            vec![("users/1/events".to_owned(), QoS::AtLeastOnce, vec![3, 5])]
        );
        // Subscribing again to the same filter replaces it.
        m.subscribe(granted("users/1/+", QoS::AtMostOnce, None));
        offer(&m, "users/1/events", "b");
        assert_eq!(
            taken(&m),
            vec![("users/1/events".to_owned(), QoS::AtMostOnce, vec![3])]
        );
    }

    #[test]
    fn take_stops_where_the_connection_stops() {
        let m = Mailbox::new(1 << 20);
        m.subscribe(granted("users/1/#", QoS::AtLeastOnce, None));
        for _ in 0..5 {
            offer(&m, "users/1/events", "p");
        }
        let mut n = 0;
        m.take(|_| {
            n += 1;
            n <= 3
        })
        .unwrap_or_else(|_| panic!("overflowed"));
        assert_eq!(n, 4, "the fourth was refused");
        assert_eq!(taken(&m).len(), 2, "two left, in order");
    }

    #[test]
    fn falling_too_far_behind_overflows_once_and_drops_the_queue() {
        let m = Mailbox::new(64);
        m.subscribe(granted("users/1/#", QoS::AtLeastOnce, None));
        // One delivery always fits, however large.
        m.offer(
            &Bytes::from_static(b"users/1/events"),
            &Bytes::from(vec![b'x'; 100]),
            None,
            QoS::AtLeastOnce,
        );
        offer(&m, "users/1/events", "next");
        assert_eq!(m.take(|_| true), Err(Overflowed));
        offer(&m, "users/1/events", "later");
        assert_eq!(m.take(|_| true), Err(Overflowed), "stays overflowed");
        assert!(m.is_empty());
    }

    #[test]
    fn qos_order() {
        assert_eq!(higher(QoS::AtMostOnce, QoS::AtLeastOnce), QoS::AtLeastOnce);
        assert_eq!(higher(QoS::AtLeastOnce, QoS::AtMostOnce), QoS::AtLeastOnce);
    }
}
