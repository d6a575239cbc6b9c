//! Wire types of the HTTP API, parsed once into Rust types.
//!
//! Unknown fields are ignored everywhere, so a newer server that adds fields
//! does not break an older SDK.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;

/// A message body: always a JSON object. A text message is `{"text": "..."}`;
/// other keys are up to the applications.
pub type Body = Map<String, Value>;

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Unix time in milliseconds.
    pub created_at: i64,
}

/// Where a message goes: `{"user": ID}` or `{"group": ID}` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipient {
    User(u64),
    Group(u64),
}

/// A stored message, as the server committed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    pub conversation_id: u64,
    /// Gap-free position inside the conversation.
    pub seq: u64,
    pub sender_id: u64,
    pub to: Recipient,
    pub client_msg_id: String,
    pub body: Body,
    /// Unix time in milliseconds, assigned by the server.
    pub sent_at: i64,
}

impl Message {
    /// The text of a text message (`body.text` when it is a string).
    pub fn text(&self) -> Option<&str> {
        self.body.get("text").and_then(Value::as_str)
    }
}

/// The kind of a conversation. Kinds this SDK does not know yet parse as
/// [`ConversationKind::Other`] instead of failing the whole listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ConversationKind {
    Direct,
    Group,
    #[serde(other)]
    Other,
}

/// One entry of `GET /v1/conversations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: u64,
    pub kind: ConversationKind,
    /// The other user of a direct conversation.
    #[serde(default)]
    pub peer: Option<User>,
    pub last_seq: u64,
    #[serde(default)]
    pub last_message: Option<Message>,
}

/// One page of `GET /v1/conversations/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Ascending by `seq`.
    pub messages: Vec<Message>,
    /// Older messages exist before the first one of this page.
    pub has_more: bool,
}

/// One page of `GET /v1/sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPage {
    /// Ascending by cursor.
    pub events: Vec<Event>,
    /// The cursor to pass as `after` for the next page: the last event's
    /// cursor, or the request's `after` when the page is empty.
    pub cursor: u64,
    /// More events exist after `cursor`.
    pub has_more: bool,
}

/// `POST /v1/auth/login` and `/refresh` answer.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LoginResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    pub user: User,
}

#[derive(Deserialize)]
pub(crate) struct ConversationList {
    pub conversations: Vec<Conversation>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recipient_wire_shape() -> Result<(), serde_json::Error> {
        assert_eq!(
            serde_json::to_value(Recipient::User(7))?,
            json!({"user": 7})
        );
        assert_eq!(
            serde_json::from_value::<Recipient>(json!({"group": 3}))?,
            Recipient::Group(3)
        );
        Ok(())
    }

    #[test]
    fn conversation_tolerates_new_kinds_and_nulls() -> Result<(), serde_json::Error> {
        let conv: Conversation = serde_json::from_value(json!({
            "id": 1, "kind": "channel", "peer": null, "last_seq": 0,
            "last_message": null, "unread": 4
        }))?;
        assert_eq!(conv.kind, ConversationKind::Other);
        assert_eq!(conv.peer, None);
        assert_eq!(conv.last_message, None);
        Ok(())
    }

    #[test]
    fn message_text() -> Result<(), serde_json::Error> {
        let msg: Message = serde_json::from_value(json!({
            "id": 1, "conversation_id": 2, "seq": 3, "sender_id": 4,
            "to": {"user": 5}, "client_msg_id": "c1", "body": {"text": "hi"},
            "sent_at": 1700000000000i64
        }))?;
        assert_eq!(msg.text(), Some("hi"));
        assert_eq!(msg.to, Recipient::User(5));
        Ok(())
    }

    #[test]
    fn user_without_display_name() -> Result<(), serde_json::Error> {
        let user: User =
            serde_json::from_value(json!({"id": 1, "username": "alice", "created_at": 5}))?;
        assert_eq!(user.display_name, None);
        Ok(())
    }
}
