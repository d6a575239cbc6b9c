//! The domain's public shapes. They are also the wire format (HTTP bodies and
//! MQTT event payloads), described by the JSON Schemas in `schemas/`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::store::messages::{ConversationRow, InboxRow, MessageRow};
use crate::store::users::UserRow;

/// A user's public profile.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub display_name: Option<String>,
    /// Unix time, milliseconds.
    pub created_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            created_at: r.created_at,
        }
    }
}

/// Who a message is for: `{"user": ID}` or `{"group": ID}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Recipient {
    User(u64),
    Group(u64),
}

/// A stored message.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: u64,
    pub conversation_id: u64,
    /// Position in the conversation: 1, 2, 3... with no gaps.
    pub seq: u64,
    pub sender_id: u64,
    pub to: Recipient,
    pub client_msg_id: String,
    /// The JSON object the sender sent, verbatim.
    pub body: Box<RawValue>,
    /// Unix time, milliseconds, when the server committed it.
    pub sent_at: i64,
}

impl TryFrom<MessageRow> for Message {
    type Error = serde_json::Error;

    fn try_from(r: MessageRow) -> Result<Self, Self::Error> {
        Ok(Message {
            id: r.id,
            conversation_id: r.conversation_id,
            seq: r.seq,
            sender_id: r.sender_id,
            to: Recipient::User(r.to_user),
            client_msg_id: r.client_msg_id,
            body: RawValue::from_string(r.body)?,
            sent_at: r.sent_at,
        })
    }
}

/// An entry of a user's event log, as returned by sync and pushed on
/// `users/{id}/events`. `cursor` is the user's inbox position: 1, 2, 3...
/// with no gaps, so a client that sees a jump knows to sync.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "message.created")]
    MessageCreated { cursor: u64, message: Message },
}

impl Event {
    pub fn cursor(&self) -> u64 {
        match self {
            Event::MessageCreated { cursor, .. } => *cursor,
        }
    }
}

impl TryFrom<InboxRow> for Event {
    type Error = String;

    fn try_from(r: InboxRow) -> Result<Self, Self::Error> {
        match (r.kind.as_str(), r.message) {
            ("message.created", Some(m)) => Ok(Event::MessageCreated {
                cursor: r.cursor,
                message: Message::try_from(m).map_err(|e| e.to_string())?,
            }),
            (kind, _) => Err(format!("inbox entry {} of unknown kind {kind}", r.cursor)),
        }
    }
}

/// A page of the event log.
#[derive(Debug, Clone, Serialize)]
pub struct SyncPage {
    pub events: Vec<Event>,
    /// The cursor to pass as `after` next time.
    pub cursor: u64,
    pub has_more: bool,
}

/// A conversation in the user's list.
#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub id: u64,
    pub kind: String,
    pub peer: Option<User>,
    pub last_seq: u64,
    pub last_message: Option<Message>,
}

impl Conversation {
    pub(crate) fn from_row(
        r: ConversationRow,
        peer: Option<User>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Conversation {
            id: r.id,
            kind: r.kind,
            peer,
            last_seq: r.last_seq,
            last_message: r.last_message.map(Message::try_from).transpose()?,
        })
    }
}

/// What a login or refresh hands out.
#[derive(Debug, Clone, Serialize)]
pub struct LoginGrant {
    pub access_token: String,
    pub refresh_token: String,
    /// Lifetime of the access token, seconds.
    pub expires_in: u64,
    pub token_type: &'static str,
    pub user: User,
}
