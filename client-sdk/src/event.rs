//! `Event`: one entry of a user's inbox, as sync returns it and MQTT pushes it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::model::Message;

/// `type` of [`Event::MessageCreated`].
const MESSAGE_CREATED: &str = "message.created";

/// An inbox event. Every event from sync carries the user's gap-free inbox
/// `cursor` (1, 2, 3, ...).
///
/// Event types this SDK does not know arrive as [`Event::Other`] with the raw
/// JSON, so an older SDK keeps working (and keeps its cursor moving) when the
/// server starts sending new kinds of events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `{"type": "message.created", "cursor": N, "message": Message}`.
    MessageCreated { cursor: u64, message: Message },
    /// Any other event, as received. A known `type` whose payload does not
    /// parse also lands here, rather than stopping the stream.
    Other(Value),
}

impl Event {
    /// The inbox cursor, if the event has one. Events without a cursor are not
    /// part of the inbox (ephemeral pushes) and bypass ordering.
    pub fn cursor(&self) -> Option<u64> {
        match self {
            Event::MessageCreated { cursor, .. } => Some(*cursor),
            Event::Other(value) => value.get("cursor").and_then(Value::as_u64),
        }
    }

    /// The event's `type` string (`""` if an unknown event lacks one).
    pub fn kind(&self) -> &str {
        match self {
            Event::MessageCreated { .. } => MESSAGE_CREATED,
            Event::Other(value) => value.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// Parses an event from JSON. Fails only when the input is not a JSON
    /// object; see [`Event::from_value`].
    pub fn from_slice(bytes: &[u8]) -> Result<Event, serde_json::Error> {
        let value: Value = serde_json::from_slice(bytes)?;
        Event::from_value(value).map_err(serde::de::Error::custom)
    }

    /// Types a JSON event. Fails only when `value` is not an object.
    pub fn from_value(value: Value) -> Result<Event, NotAnObject> {
        if !value.is_object() {
            return Err(NotAnObject);
        }
        if value.get("type").and_then(Value::as_str) != Some(MESSAGE_CREATED) {
            return Ok(Event::Other(value));
        }
        #[derive(Deserialize)]
        struct MessageCreated {
            cursor: u64,
            message: Message,
        }
        match MessageCreated::deserialize(&value) {
            Ok(parsed) => Ok(Event::MessageCreated {
                cursor: parsed.cursor,
                message: parsed.message,
            }),
            Err(err) => {
                tracing::warn!(%err, "malformed {MESSAGE_CREATED} event, passed through untyped");
                Ok(Event::Other(value))
            }
        }
    }

    /// The JSON form, as the server sends it.
    pub fn to_value(&self) -> Value {
        match self {
            Event::MessageCreated { cursor, message } => {
                json!({"type": MESSAGE_CREATED, "cursor": cursor, "message": message})
            }
            Event::Other(value) => value.clone(),
        }
    }
}

/// An event payload that is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event is not a JSON object")]
pub struct NotAnObject;

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Event::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Recipient;

    fn message_json() -> Value {
        json!({
            "id": 10, "conversation_id": 2, "seq": 1, "sender_id": 4,
            "to": {"user": 5}, "client_msg_id": "abc", "body": {"text": "hello"},
            "sent_at": 1700000000000i64
        })
    }

    #[test]
    fn parses_message_created() -> Result<(), serde_json::Error> {
        let raw = json!({"type": "message.created", "cursor": 7, "message": message_json()});
        let event = Event::from_slice(raw.to_string().as_bytes())?;
        match &event {
            Event::MessageCreated { cursor, message } => {
                assert_eq!(*cursor, 7);
                assert_eq!(message.text(), Some("hello"));
                assert_eq!(message.to, Recipient::User(5));
            }
            other => panic!("expected MessageCreated, got {other:?}"),
        }
        assert_eq!(event.cursor(), Some(7));
        assert_eq!(event.kind(), "message.created");
        assert_eq!(event.to_value(), raw);
        Ok(())
    }

    #[test]
    fn unknown_type_passes_through_with_cursor() -> Result<(), serde_json::Error> {
        let raw = json!({"type": "friend.requested", "cursor": 3, "from": 9});
        let event: Event = serde_json::from_value(raw.clone())?;
        assert_eq!(event, Event::Other(raw.clone()));
        assert_eq!(event.cursor(), Some(3));
        assert_eq!(event.kind(), "friend.requested");
        assert_eq!(serde_json::to_value(&event)?, raw);
        Ok(())
    }

    #[test]
    fn malformed_known_type_degrades_to_other() -> Result<(), serde_json::Error> {
        let raw = json!({"type": "message.created", "cursor": 4, "message": {"id": "x"}});
        let event = Event::from_slice(raw.to_string().as_bytes())?;
        assert_eq!(event, Event::Other(raw));
        assert_eq!(event.cursor(), Some(4), "cursor still usable for ordering");
        Ok(())
    }

    #[test]
    fn event_without_cursor_or_type() -> Result<(), serde_json::Error> {
        let event = Event::from_slice(br#"{"typing": true}"#)?;
        assert_eq!(event.cursor(), None);
        assert_eq!(event.kind(), "");
        Ok(())
    }

    #[test]
    fn rejects_non_objects() {
        assert!(Event::from_slice(b"[1,2]").is_err());
        assert!(Event::from_slice(b"not json").is_err());
        assert_eq!(Event::from_value(json!(5)), Err(NotAnObject));
    }

    #[test]
    fn sync_page_with_mixed_events() -> Result<(), serde_json::Error> {
        let page: crate::SyncPage = serde_json::from_value(json!({
            "events": [
                {"type": "message.created", "cursor": 1, "message": message_json()},
                {"type": "group.joined", "cursor": 2, "group": {"id": 1}}
            ],
            "cursor": 2,
            "has_more": false
        }))?;
        let cursors: Vec<_> = page.events.iter().map(Event::cursor).collect();
        assert_eq!(cursors, [Some(1), Some(2)]);
        assert!(matches!(page.events[0], Event::MessageCreated { .. }));
        assert!(matches!(page.events[1], Event::Other(_)));
        Ok(())
    }
}
