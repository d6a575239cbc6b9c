//! The embedded broker as the service's downlink.

use bytes::Bytes;
use mqchat_broker::Broker;

use crate::domain::Downlink;

/// Pushes events to `users/{id}/events` through the in-process broker.
pub struct BrokerDownlink(pub Broker);

impl Downlink for BrokerDownlink {
    fn push(&self, user_id: u64, subtopic: &str, event: Bytes) -> bool {
        self.0.push(user_id, subtopic, event)
    }

    fn push_batch(&self, items: &[(u64, &'static str, Bytes)]) -> usize {
        self.0
            .push_many(items.iter().map(|(u, s, b)| (*u, *s, b.clone())))
    }

    fn end_sessions(&self, user_id: u64, session_id: Option<u64>) -> usize {
        self.0.disconnect(user_id, session_id)
    }

    fn is_online(&self, user_id: u64) -> bool {
        self.0.is_online(user_id)
    }
}

/// For tools that change the store without a running broker (`chatd admin`):
/// nobody is connected, so nothing is pushed.
pub struct NoDownlink;

impl Downlink for NoDownlink {
    fn push(&self, _: u64, _: &str, _: Bytes) -> bool {
        false
    }

    fn end_sessions(&self, _: u64, _: Option<u64>) -> usize {
        0
    }

    fn is_online(&self, _: u64) -> bool {
        false
    }
}
