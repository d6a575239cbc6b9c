//! Wire types of the HTTP API, parsed once into Rust types.
//!
//! Unknown fields are ignored everywhere, so a newer server that adds fields
//! does not break an older SDK; unknown enum values parse as an `Other`
//! variant. The entity structs are `#[non_exhaustive]` for the same reason in
//! the other direction: the SDK can follow a new server field without a
//! breaking release. Build them by deserializing, not by struct literal.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;

/// A message body: always a JSON object. A text message is `{"text": "..."}`;
/// other keys are up to the applications.
pub type Body = Map<String, Value>;

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct User {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Unix time in milliseconds.
    pub created_at: i64,
    /// Who may add this user to groups directly: only in one's own
    /// profile ([`Client::me`](crate::Client::me)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_add_policy: Option<GroupAddPolicy>,
}

/// Who may add a user to groups directly; anyone else's add becomes an
/// invitation the user accepts or declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupAddPolicy {
    Anyone,
    Friends,
    Nobody,
}

/// One send of a batch ([`Client::send_batch`](crate::Client::send_batch)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutgoingMessage {
    pub to: Recipient,
    /// 1..=64 characters; sending the same id again returns the message
    /// stored the first time.
    pub client_msg_id: String,
    pub body: Body,
    /// Makes it a reply to this message (of the same conversation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// Members to mention, or everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Mentions>,
}

impl OutgoingMessage {
    /// A message with a fresh `client_msg_id`
    /// ([`new_client_msg_id`](crate::new_client_msg_id)); keep the value
    /// for every retry of it.
    pub fn new(to: Recipient, body: Body) -> OutgoingMessage {
        OutgoingMessage {
            to,
            client_msg_id: crate::new_client_msg_id(),
            body,
            reply_to: None,
            mentions: None,
        }
    }

    /// The same message as a reply to `message_id`.
    pub fn reply_to(mut self, message_id: u64) -> OutgoingMessage {
        self.reply_to = Some(message_id);
        self
    }

    /// The same message mentioning `mentions`.
    pub fn mentioning(mut self, mentions: Mentions) -> OutgoingMessage {
        self.mentions = Some(mentions);
        self
    }

    /// A text message (`{"text": text}`) with a fresh `client_msg_id`.
    pub fn text(to: Recipient, text: &str) -> OutgoingMessage {
        let mut body = Body::new();
        body.insert("text".to_owned(), Value::String(text.to_owned()));
        OutgoingMessage::new(to, body)
    }
}

/// Where a message goes: `{"user": ID}` or `{"group": ID}` on the wire.
///
/// A group message is sent like any other:
/// `client.send_text(Recipient::Group(group.id), "hi all")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipient {
    User(u64),
    Group(u64),
}

/// Who wrote a message. Kinds this SDK does not know yet parse as
/// [`MessageKind::Other`], so a newer server does not break history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MessageKind {
    /// Written by a user. The default, because servers before the social
    /// layer sent no `kind` and had only user messages.
    #[default]
    User,
    /// Written by the server: a group membership change, see
    /// [`Message::system_event`].
    System,
    #[serde(other)]
    Other,
}

/// A stored message, as the server committed it (and, after edits and
/// recalls, as it is now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    pub id: u64,
    pub conversation_id: u64,
    /// Gap-free position inside the conversation.
    pub seq: u64,
    pub sender_id: u64,
    pub to: Recipient,
    #[serde(default)]
    pub kind: MessageKind,
    pub client_msg_id: String,
    /// The latest edit of the sender's body; `{}` once recalled.
    pub body: Body,
    /// Unix time in milliseconds, assigned by the server.
    pub sent_at: i64,
    /// When the text was last edited (Unix ms); `None` if never.
    #[serde(default)]
    pub edited_at: Option<i64>,
    /// When the sender recalled it (Unix ms). The body is gone then.
    #[serde(default)]
    pub recalled_at: Option<i64>,
    /// Reactions counted per emoji (in history, sync and pins; empty when
    /// none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<crate::reactions::Reaction>,
    /// When it disappears (Unix ms): it was sent while its conversation had
    /// a disappearing-messages timer. Past it the server shows it no more
    /// and sends [`Event::MessageExpired`](crate::Event::MessageExpired);
    /// a client should hide it then too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// A reply: the message it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// A reply: the message it answers, as that message reads now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<Box<Quote>>,
    /// Whom the message mentions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Box<Mentions>>,
    /// A forwarded copy: where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<Box<ForwardedFrom>>,
}

/// Whom a message mentions: `[USER_ID, ...]` or `"all"` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Mentions {
    /// These users (members of the conversation).
    Users(Vec<u64>),
    /// Everyone (`"all"`): in a group, its owner and admins may, or every
    /// member when the group's [`MentionAll`] is `Members`.
    All(AllMembers),
}

impl Mentions {
    /// `"all"`.
    pub fn all() -> Mentions {
        Mentions::All(AllMembers::All)
    }
}

/// The one value of [`Mentions::All`]: `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllMembers {
    All,
}

/// A reply's quote of the message it answers, as that message reads now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Quote {
    pub id: u64,
    /// `None` once the message is gone from the store.
    #[serde(default)]
    pub sender_id: Option<u64>,
    /// At most 100 characters of its text; `None` without text or once removed.
    #[serde(default)]
    pub snippet: Option<String>,
    /// Recalled, expired or gone: show a tombstone.
    #[serde(default)]
    pub removed: bool,
}

/// Where a forwarded copy came from (never the original's conversation or id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ForwardedFrom {
    pub sender_id: u64,
    pub conversation_kind: ConversationKind,
    /// Unix ms.
    pub sent_at: i64,
}

/// Who may mention `"all"` in a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MentionAll {
    /// The owner and admins.
    #[default]
    Admins,
    /// Every member.
    Members,
}

impl Message {
    /// The text of a text message (`body.text` when it is a string).
    pub fn text(&self) -> Option<&str> {
        self.body.get("text").and_then(Value::as_str)
    }

    /// Whether the sender took the message back; show a tombstone then.
    pub fn is_recalled(&self) -> bool {
        self.recalled_at.is_some()
    }

    /// Whether the message has disappeared at `now_ms` (Unix ms).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }

    /// The membership change a system message records; `None` for user
    /// messages (and for a system body this SDK cannot read).
    pub fn system_event(&self) -> Option<SystemEvent> {
        if self.kind != MessageKind::System {
            return None;
        }
        let system = self.body.get("system")?;
        match SystemEvent::deserialize(system) {
            Ok(event) => Some(event),
            Err(err) => {
                tracing::warn!(%err, id = self.id, "unreadable system message body");
                None
            }
        }
    }
}

/// The body of a system message, `{"system": {...}}`: what changed in a
/// group, in timeline order with the user messages around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SystemEvent {
    pub event: SystemEventKind,
    /// Who made the change.
    pub actor: u64,
    /// Whom it concerns: everyone in the group for `created`, the added or
    /// removed members, the new owner, the member whose role changed. Empty
    /// for `renamed` and `dissolved`, which concern nobody in particular
    /// (the server leaves the field out then).
    #[serde(default)]
    pub users: Vec<u64>,
    /// The group's name, for `created` and `renamed`.
    #[serde(default)]
    pub name: Option<String>,
    /// The new role, for `role_changed`.
    #[serde(default)]
    pub role: Option<GroupRole>,
    /// Who may pin now, for `pin_policy_changed`.
    #[serde(default)]
    pub who_can_pin: Option<crate::reactions::PinPolicy>,
    /// The conversation's new disappearing-messages timer, seconds, for
    /// `message_ttl_changed` (`None`: off).
    #[serde(default)]
    pub message_ttl_seconds: Option<u64>,
}

/// What a [`SystemEvent`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SystemEventKind {
    /// The group was created with `users` (owner first).
    Created,
    /// `actor` added `users`.
    MemberAdded,
    /// `actor` removed `users`; a removed member gets this as its last event.
    MemberRemoved,
    /// `actor` left (`users == [actor]`).
    MemberLeft,
    /// `actor` renamed the group to `name`.
    Renamed,
    /// `actor` handed the group to `users[0]` and became an admin.
    OwnerChanged,
    /// `actor` gave `users` the role `role`.
    RoleChanged,
    /// `actor` dissolved the group; nobody is a member afterwards.
    Dissolved,
    /// `actor` changed who may pin messages to `who_can_pin`.
    PinPolicyChanged,
    /// `actor` set the disappearing-messages timer to `message_ttl_seconds`.
    MessageTtlChanged,
    #[serde(other)]
    Other,
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
#[non_exhaustive]
pub struct Conversation {
    pub id: u64,
    pub kind: ConversationKind,
    /// The other user of a direct conversation.
    #[serde(default)]
    pub peer: Option<User>,
    /// The group of a group conversation.
    #[serde(default)]
    pub group: Option<GroupRef>,
    pub last_seq: u64,
    /// This user's read marker: everything up to this seq has been read.
    #[serde(default)]
    pub read_seq: u64,
    /// Messages from others after the read marker.
    #[serde(default)]
    pub unread_count: u64,
    /// Of those, the ones that mention this user (by id or `"all"`).
    #[serde(default)]
    pub mention_count: u64,
    /// The newest message; `None` if there is none, or it disappeared.
    #[serde(default)]
    pub last_message: Option<Message>,
    /// This user's own settings of it.
    #[serde(default)]
    pub settings: crate::reactions::ConversationSettings,
    /// The disappearing-messages timer, seconds; `None`: off.
    #[serde(default)]
    pub message_ttl_seconds: Option<u64>,
}

/// A group as a conversation names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupRef {
    pub id: u64,
    pub name: String,
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

/// Where a friend request stands. The server reports a pending request past
/// its `expires_at` as `Expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FriendRequestStatus {
    Pending,
    Accepted,
    Rejected,
    Cancelled,
    Expired,
    #[serde(other)]
    Other,
}

/// A friend request from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FriendRequest {
    pub id: u64,
    pub from: u64,
    pub to: u64,
    #[serde(default)]
    pub note: Option<String>,
    pub status: FriendRequestStatus,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; a request still pending then expires.
    pub expires_at: i64,
}

/// A friend, with presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Friend {
    pub user: User,
    /// Friends since, Unix ms.
    pub since: i64,
    pub online: bool,
    /// When the friend was last seen going offline (Unix ms); `None` if never.
    #[serde(default)]
    pub last_seen: Option<i64>,
}

/// A user's presence as a friend sees it (`GET /v1/presence`, and the
/// payload of [`Event::Presence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Presence {
    pub user_id: u64,
    pub online: bool,
    /// When the user was last seen going offline (Unix ms); `None` if never.
    #[serde(default)]
    pub last_seen: Option<i64>,
}

/// A member's role in a group, most powerful first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GroupRole {
    /// One per group: may do everything, including dissolve and transfer.
    Owner,
    /// May rename, add members and remove plain members.
    Admin,
    Member,
    #[serde(other)]
    Other,
}

/// A group member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupMember {
    pub user_id: u64,
    pub role: GroupRole,
}

/// A group, as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Group {
    pub id: u64,
    /// The group's timeline: pass it to [`Client::history`](crate::Client::history)
    /// and [`Client::mark_read`](crate::Client::mark_read).
    pub conversation_id: u64,
    pub name: String,
    pub owner_id: u64,
    /// Unix ms.
    pub created_at: i64,
    pub members: Vec<GroupMember>,
    /// Who may pin messages.
    #[serde(default = "admins_pin")]
    pub who_can_pin: crate::reactions::PinPolicy,
    /// Who may mention `"all"`.
    #[serde(default)]
    pub mention_all: MentionAll,
    /// Users invited rather than added, because their
    /// [`GroupAddPolicy`] asks for consent: only in the answer to
    /// [`Client::create_group`](crate::Client::create_group) and
    /// [`Client::add_group_members`](crate::Client::add_group_members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invited: Vec<u64>,
}

fn admins_pin() -> crate::reactions::PinPolicy {
    crate::reactions::PinPolicy::Admins
}

/// Where an invitation to a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    /// The group was dissolved first.
    Cancelled,
    #[serde(other)]
    Other,
}

/// An invitation to join a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInvitation {
    pub id: u64,
    pub group_id: u64,
    pub group_name: String,
    pub inviter_id: u64,
    pub invitee_id: u64,
    pub status: InvitationStatus,
    /// Unix ms.
    pub created_at: i64,
}

impl Group {
    /// The role of `user_id`, if it is a member.
    pub fn role_of(&self, user_id: u64) -> Option<GroupRole> {
        self.members
            .iter()
            .find(|m| m.user_id == user_id)
            .map(|m| m.role)
    }
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

#[derive(Deserialize)]
pub(crate) struct FriendList {
    pub friends: Vec<Friend>,
}

#[derive(Deserialize)]
pub(crate) struct FriendRequestList {
    pub requests: Vec<FriendRequest>,
}

#[derive(Deserialize)]
pub(crate) struct BlockList {
    pub user_ids: Vec<u64>,
}

#[derive(Deserialize)]
pub(crate) struct PresenceList {
    pub presence: Vec<Presence>,
}

#[derive(Deserialize)]
pub(crate) struct GroupList {
    pub groups: Vec<Group>,
}

#[derive(Deserialize)]
pub(crate) struct InvitationList {
    pub invitations: Vec<GroupInvitation>,
}

#[derive(Deserialize)]
pub(crate) struct ConversationUpdated {
    pub message_ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ReadMarker {
    pub read_seq: u64,
}

#[derive(Deserialize)]
pub(crate) struct SearchResults {
    pub messages: Vec<Message>,
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

    fn system_message(system: Value) -> Result<Message, serde_json::Error> {
        serde_json::from_value(json!({
            "id": 30, "conversation_id": 8, "seq": 4, "sender_id": 1,
            "to": {"group": 2}, "kind": "system", "client_msg_id": "system-00000000000000ab",
            "body": {"system": system}, "sent_at": 1700000000000i64,
            "edited_at": null, "recalled_at": null
        }))
    }

    #[test]
    fn message_from_a_server_before_the_social_layer() -> Result<(), serde_json::Error> {
        let msg: Message = serde_json::from_value(json!({
            "id": 1, "conversation_id": 2, "seq": 3, "sender_id": 4,
            "to": {"user": 5}, "client_msg_id": "c1", "body": {"text": "hi"},
            "sent_at": 1700000000000i64
        }))?;
        assert_eq!(msg.kind, MessageKind::User);
        assert_eq!((msg.edited_at, msg.recalled_at), (None, None));
        assert!(!msg.is_recalled());
        assert_eq!(msg.system_event(), None);
        Ok(())
    }

    #[test]
    fn system_messages_of_every_group_change() -> Result<(), serde_json::Error> {
        let created = system_message(json!({
            "event": "created", "actor": 1, "name": "climbers", "users": [1, 2, 3]
        }))?;
        assert_eq!(created.to, Recipient::Group(2));
        let event = created.system_event();
        assert_eq!(
            event
                .as_ref()
                .map(|e| (e.event, e.actor, e.users.as_slice(), e.name.as_deref())),
            Some((
                SystemEventKind::Created,
                1,
                &[1, 2, 3][..],
                Some("climbers")
            ))
        );

        for (kind, typed) in [
            ("member_added", SystemEventKind::MemberAdded),
            ("member_removed", SystemEventKind::MemberRemoved),
            ("member_left", SystemEventKind::MemberLeft),
            ("owner_changed", SystemEventKind::OwnerChanged),
        ] {
            let msg = system_message(json!({"event": kind, "actor": 1, "users": [3]}))?;
            let event = msg.system_event();
            assert_eq!(
                event.map(|e| (e.event, e.users)),
                Some((typed, vec![3])),
                "{kind}"
            );
        }

        let role = system_message(json!({
            "event": "role_changed", "actor": 1, "users": [3], "role": "admin"
        }))?;
        assert_eq!(
            role.system_event().and_then(|e| e.role),
            Some(GroupRole::Admin)
        );

        // renamed and dissolved come without `users`.
        let renamed =
            system_message(json!({"event": "renamed", "actor": 1, "name": "boulderers"}))?;
        let event = renamed.system_event();
        assert_eq!(
            event.map(|e| (e.event, e.users.is_empty(), e.name)),
            Some((
                SystemEventKind::Renamed,
                true,
                Some("boulderers".to_owned())
            ))
        );
        let dissolved = system_message(json!({"event": "dissolved", "actor": 1}))?;
        assert_eq!(
            dissolved.system_event().map(|e| e.event),
            Some(SystemEventKind::Dissolved)
        );

        let future = system_message(json!({"event": "pinned", "actor": 1, "message_id": 4}))?;
        assert_eq!(
            future.system_event().map(|e| e.event),
            Some(SystemEventKind::Other)
        );
        Ok(())
    }

    #[test]
    fn a_user_message_is_never_a_system_event() -> Result<(), serde_json::Error> {
        let mut msg = system_message(json!({"event": "created", "actor": 1}))?;
        msg.kind = MessageKind::User;
        assert_eq!(msg.system_event(), None);
        Ok(())
    }

    #[test]
    fn group_conversation_with_read_marker() -> Result<(), serde_json::Error> {
        let conv: Conversation = serde_json::from_value(json!({
            "id": 8, "kind": "group", "peer": null, "group": {"id": 2, "name": "climbers"},
            "last_seq": 12, "read_seq": 9, "unread_count": 2, "last_message": null
        }))?;
        assert_eq!(conv.kind, ConversationKind::Group);
        assert_eq!(
            conv.group.map(|g| (g.id, g.name)),
            Some((2, "climbers".to_owned()))
        );
        assert_eq!((conv.read_seq, conv.unread_count), (9, 2));
        Ok(())
    }

    #[test]
    fn friend_request_statuses() -> Result<(), serde_json::Error> {
        for (wire, typed) in [
            ("pending", FriendRequestStatus::Pending),
            ("accepted", FriendRequestStatus::Accepted),
            ("rejected", FriendRequestStatus::Rejected),
            ("cancelled", FriendRequestStatus::Cancelled),
            ("expired", FriendRequestStatus::Expired),
            ("withdrawn", FriendRequestStatus::Other),
        ] {
            let request: FriendRequest = serde_json::from_value(json!({
                "id": 1, "from": 2, "to": 3, "note": null, "status": wire,
                "created_at": 10, "expires_at": 20
            }))?;
            assert_eq!(request.status, typed, "{wire}");
            assert_eq!(request.note, None);
        }
        Ok(())
    }

    #[test]
    fn friends_and_presence() -> Result<(), serde_json::Error> {
        let friend: Friend = serde_json::from_value(json!({
            "user": {"id": 9, "username": "bob", "display_name": null, "created_at": 1},
            "since": 100, "online": false, "last_seen": 200
        }))?;
        assert_eq!(
            (friend.user.id, friend.since, friend.online),
            (9, 100, false)
        );
        assert_eq!(friend.last_seen, Some(200));
        let presence: Presence =
            serde_json::from_value(json!({"user_id": 9, "online": true, "last_seen": null}))?;
        assert!(presence.online);
        assert_eq!(presence.last_seen, None);
        Ok(())
    }

    #[test]
    fn group_roles() -> Result<(), serde_json::Error> {
        let group: Group = serde_json::from_value(json!({
            "id": 2, "conversation_id": 8, "name": "climbers", "owner_id": 1,
            "created_at": 5, "members": [
                {"user_id": 1, "role": "owner"},
                {"user_id": 2, "role": "admin"},
                {"user_id": 3, "role": "member"},
                {"user_id": 4, "role": "guest"}
            ]
        }))?;
        assert_eq!(group.role_of(1), Some(GroupRole::Owner));
        assert_eq!(group.role_of(2), Some(GroupRole::Admin));
        assert_eq!(group.role_of(3), Some(GroupRole::Member));
        assert_eq!(group.role_of(4), Some(GroupRole::Other));
        assert_eq!(group.role_of(5), None);
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
