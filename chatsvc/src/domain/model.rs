//! The domain's public shapes. They are also the wire format (HTTP bodies and
//! MQTT event payloads), described by the JSON Schemas in `schemas/`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::pins::PinPolicy;
use super::replies::{ForwardedFrom, MentionAll, Mentions, Quote, Shown};
use super::settings::ConversationSettings;
use crate::store::groups::{GroupRow, InvitationRow};
use crate::store::messages::{ConversationRow, InboxRow, MessageRow};
use crate::store::social::FriendRequestRow;
use crate::store::users::UserRow;

/// A user's public profile.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct User {
    pub id: u64,
    pub username: String,
    #[schema(required = true)]
    pub display_name: Option<String>,
    /// Unix time, milliseconds.
    pub created_at: i64,
    /// Who may add this user to groups directly (the caller's own profile,
    /// `GET /v1/me`, only); others' adds become invitations.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub group_add_policy: Option<GroupAddPolicy>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            created_at: r.created_at,
            group_add_policy: None,
        }
    }
}

/// Who may add a user to a group directly. Anyone else's add becomes an
/// invitation the user accepts or declines.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupAddPolicy {
    Anyone,
    Friends,
    Nobody,
}

impl GroupAddPolicy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GroupAddPolicy::Anyone => "anyone",
            GroupAddPolicy::Friends => "friends",
            GroupAddPolicy::Nobody => "nobody",
        }
    }

    /// The stored value; unknown text counts as the safest choice.
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "anyone" => GroupAddPolicy::Anyone,
            "friends" => GroupAddPolicy::Friends,
            _ => GroupAddPolicy::Nobody,
        }
    }
}

/// An invitation to join a group. `status`: pending, accepted, declined,
/// cancelled (the group was dissolved).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct GroupInvitation {
    pub id: u64,
    pub group_id: u64,
    pub group_name: String,
    pub inviter_id: u64,
    pub invitee_id: u64,
    pub status: String,
    pub created_at: i64,
}

impl From<InvitationRow> for GroupInvitation {
    fn from(r: InvitationRow) -> Self {
        GroupInvitation {
            id: r.id,
            group_id: r.group_id,
            group_name: r.group_name,
            inviter_id: r.inviter_id,
            invitee_id: r.invitee_id,
            status: r.status,
            created_at: r.created_at,
        }
    }
}

/// Who a message is for: `{"user": ID}` or `{"group": ID}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Recipient {
    User(u64),
    Group(u64),
}

/// A stored message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    pub id: u64,
    pub conversation_id: u64,
    /// Position in the conversation: 1, 2, 3... with no gaps.
    pub seq: u64,
    pub sender_id: u64,
    pub to: Recipient,
    /// `user`, or `system` for group membership changes (body `{"system": {...}}`).
    pub kind: String,
    pub client_msg_id: String,
    /// The JSON object the sender sent, verbatim (its latest edit); `{}`
    /// once recalled or expired.
    #[schema(value_type = Object)]
    pub body: Box<RawValue>,
    /// Unix time, milliseconds, when the server committed it.
    pub sent_at: i64,
    #[schema(required = true)]
    pub edited_at: Option<i64>,
    #[schema(required = true)]
    pub recalled_at: Option<i64>,
    /// Reactions counted per emoji, with whether the reader is among them
    /// (in history, sync and pins; left out when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub reactions: Vec<super::reactions::Reaction>,
    /// Unix time, milliseconds, when the message disappears (sent while
    /// its conversation had a `message_ttl_seconds`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub expires_at: Option<i64>,
    /// The message this one replies to (a reply only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reply_to: Option<u64>,
    /// The message replied to, as it reads now (a reply only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub quote: Option<Quote>,
    /// Whom the message mentions: user ids, or `"all"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Object)]
    pub mentions: Option<Mentions>,
    /// Where a forwarded copy came from (a forward only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub forwarded_from: Option<ForwardedFrom>,
}

impl TryFrom<MessageRow> for Message {
    type Error = serde_json::Error;

    fn try_from(r: MessageRow) -> Result<Self, Self::Error> {
        let to = match (r.to_group, r.to_user) {
            (Some(g), _) => Recipient::Group(g),
            (None, Some(u)) => Recipient::User(u),
            (None, None) => Recipient::User(r.sender_id),
        };
        let shown = Shown::of(r.extras.as_deref());
        Ok(Message {
            id: r.id,
            conversation_id: r.conversation_id,
            seq: r.seq,
            sender_id: r.sender_id,
            to,
            kind: r.kind,
            client_msg_id: r.client_msg_id,
            body: RawValue::from_string(r.body)?,
            sent_at: r.sent_at,
            edited_at: r.edited_at,
            recalled_at: r.recalled_at,
            reactions: Vec::new(),
            expires_at: r.expires_at,
            reply_to: shown.reply_to,
            quote: shown.quote,
            mentions: shown.mentions,
            forwarded_from: shown.forwarded_from,
        })
    }
}

/// An entry of a user's event log, as returned by sync and pushed on
/// `users/{id}/events`: a `type`, the user's inbox `cursor` (1, 2, 3... with
/// no gaps, so a client that sees a jump knows to sync) and the fields of
/// that type, e.g. `message` for `message.created`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub cursor: u64,
    /// The fields of this type of event (described in `schemas/mqchat.schema.json`).
    #[serde(flatten)]
    #[schema(value_type = HashMap<String, Value>)]
    pub data: Map<String, Value>,
}

impl TryFrom<InboxRow> for Event {
    type Error = String;

    fn try_from(r: InboxRow) -> Result<Self, Self::Error> {
        let mut data = match &r.payload {
            Some(p) => serde_json::from_str::<Map<String, Value>>(p).map_err(|e| e.to_string())?,
            None => Map::new(),
        };
        if let Some(m) = r.message {
            let message = Message::try_from(m).map_err(|e| e.to_string())?;
            data.insert(
                "message".into(),
                serde_json::to_value(message).map_err(|e| e.to_string())?,
            );
        }
        Ok(Event {
            kind: r.kind,
            cursor: r.cursor,
            data,
        })
    }
}

/// A page of the event log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncPage {
    pub events: Vec<Event>,
    /// The cursor to pass as `after` next time.
    pub cursor: u64,
    pub has_more: bool,
}

/// A group as listed in a conversation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct GroupRef {
    pub id: u64,
    pub name: String,
}

/// A conversation in the user's list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Conversation {
    pub id: u64,
    /// `direct` or `group`.
    pub kind: String,
    /// Direct conversations: the other user.
    #[schema(required = true)]
    pub peer: Option<User>,
    /// Group conversations: the group.
    #[schema(required = true)]
    pub group: Option<GroupRef>,
    pub last_seq: u64,
    /// The user's read marker.
    pub read_seq: u64,
    /// Messages from others after the read marker.
    pub unread_count: u64,
    /// Of those, the ones that mention the user (by id or `"all"`).
    pub mention_count: u64,
    /// The newest message; `null` if there is none, or it has disappeared.
    #[schema(required = true)]
    pub last_message: Option<Message>,
    /// The caller's own settings of it.
    pub settings: ConversationSettings,
    /// Disappearing messages: messages sent now disappear this many
    /// seconds after `sent_at`; `null`: off.
    #[schema(required = true)]
    pub message_ttl_seconds: Option<u64>,
}

impl Conversation {
    /// The conversation as its member sees it at `now`.
    pub(crate) fn from_row(
        r: ConversationRow,
        peer: Option<User>,
        now: i64,
    ) -> Result<Self, serde_json::Error> {
        Ok(Conversation {
            settings: ConversationSettings::from_row(&r.settings, now),
            id: r.id,
            kind: r.kind,
            peer,
            group: match (r.group_id, r.group_name) {
                (Some(id), Some(name)) => Some(GroupRef { id, name }),
                _ => None,
            },
            last_seq: r.last_seq,
            read_seq: r.read_seq,
            unread_count: r.unread,
            mention_count: r.mentions,
            last_message: r
                .last_message
                .filter(|m| !crate::store::expiry::is_expired(m, now))
                .map(Message::try_from)
                .transpose()?,
            message_ttl_seconds: r.message_ttl_seconds,
        })
    }
}

/// What a login or refresh hands out.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginGrant {
    pub access_token: String,
    pub refresh_token: String,
    /// Lifetime of the access token, seconds.
    pub expires_in: u64,
    pub token_type: &'static str,
    pub user: User,
}

/// A friend request. `status`: pending, accepted, rejected, cancelled, expired.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct FriendRequest {
    pub id: u64,
    pub from: u64,
    pub to: u64,
    #[schema(required = true)]
    pub note: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl FriendRequest {
    pub(crate) fn from_row(r: FriendRequestRow, now: i64) -> Self {
        let status = if r.status == "pending" && r.expires_at <= now {
            "expired".to_owned()
        } else {
            r.status
        };
        FriendRequest {
            id: r.id,
            from: r.from_id,
            to: r.to_id,
            note: r.note,
            status,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

/// A friend with presence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Friend {
    pub user: User,
    /// Friends since, Unix ms.
    pub since: i64,
    pub online: bool,
    /// When the friend's last connection closed, Unix ms (null if never seen).
    #[schema(required = true)]
    pub last_seen: Option<i64>,
}

/// A user's presence, as friends see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Presence {
    pub user_id: u64,
    pub online: bool,
    #[schema(required = true)]
    pub last_seen: Option<i64>,
}

/// A group member and role (`owner`, `admin`, `member`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct GroupMember {
    pub user_id: u64,
    pub role: String,
}

/// A group, as its members see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Group {
    pub id: u64,
    pub conversation_id: u64,
    pub name: String,
    pub owner_id: u64,
    pub created_at: i64,
    pub members: Vec<GroupMember>,
    /// Who may pin messages: `admins` (the owner and admins) or `members`.
    pub who_can_pin: PinPolicy,
    /// Who may mention `"all"`: `admins` (the owner and admins) or `members`.
    pub mention_all: MentionAll,
    /// Users just invited rather than added, because their setting asks
    /// for consent (only in the answer to the create or add call).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub invited: Vec<u64>,
}

impl Group {
    pub(crate) fn from_row(
        r: GroupRow,
        members: Vec<(u64, String)>,
        who_can_pin: PinPolicy,
    ) -> Self {
        Group {
            id: r.id,
            conversation_id: r.conversation_id,
            name: r.name,
            owner_id: r.owner_id,
            created_at: r.created_at,
            members: members
                .into_iter()
                .map(|(user_id, role)| GroupMember { user_id, role })
                .collect(),
            who_can_pin,
            mention_all: MentionAll::Admins,
            invited: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FriendRequest;
    use crate::store::social::FriendRequestRow;

    #[test]
    fn pending_requests_past_their_expiry_read_as_expired() {
        let row = FriendRequestRow {
            id: 1,
            from_id: 1,
            to_id: 2,
            note: None,
            status: "pending".into(),
            created_at: 0,
            expires_at: 100,
        };
        assert_eq!(FriendRequest::from_row(row.clone(), 99).status, "pending");
        assert_eq!(FriendRequest::from_row(row.clone(), 100).status, "expired");
        let decided = FriendRequestRow {
            status: "accepted".into(),
            ..row
        };
        assert_eq!(FriendRequest::from_row(decided, 1000).status, "accepted");
    }
}
