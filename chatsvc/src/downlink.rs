//! The embedded broker as the service's downlink.

use bytes::Bytes;
use mqchat_broker::Broker;

use crate::domain::Downlink;

/// Pushes events to `users/{id}/events` through the in-process broker.
pub struct BrokerDownlink(pub Broker);

/// The subtopic every stored event is pushed on.
pub const EVENTS_SUBTOPIC: &str = "events";

impl Downlink for BrokerDownlink {
    fn push(&self, user_id: u64, event: Bytes) -> bool {
        self.0.push(user_id, EVENTS_SUBTOPIC, event)
    }

    fn end_sessions(&self, user_id: u64, session_id: Option<u64>) -> usize {
        self.0.disconnect(user_id, session_id)
    }

    fn is_online(&self, user_id: u64) -> bool {
        self.0.is_online(user_id)
    }
}
