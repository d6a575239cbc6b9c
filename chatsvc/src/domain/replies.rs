//! Replies, mentions and forwarding: the shapes a message gains
//! ([`Quote`], [`Mentions`], [`ForwardedFrom`]), the checks a send with
//! `reply_to` or `mentions` passes on the writer (`check`), forwarding
//! ([`Chat::forward`]) and a group's `mention_all` setting.
//!
//! A reply's quote is read from its target whenever the reply is read
//! (history, sync, search, the conversation list; the push takes it from
//! the send's own check), never copied into the reply: a recall, an edit or
//! an expiry shows in every quote at once, and a plain send writes nothing
//! for it. The cost is one primary-key look-up per reply read; keeping a
//! copy would cost every recall and edit a search for the replies to it,
//! and a copy that one missed would show recalled text.
//!
//! Mentions are a column of the message. Whether an event mentions its
//! reader (`mentions_user`) is worked out when it is pushed or synced,
//! and `mention_count` by counting the messages after the read marker that
//! name the reader, as `unread_count` counts them: exact on every device,
//! after a restart, after a recall, with no counter to keep.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::model::Recipient;
use super::sends::SendItem;
use super::tokens::Caller;
use super::{Chat, DomainError};
use crate::store::messages::{self as messages_store, MessageExtras, MessageRow};
use crate::store::replies as store;
use crate::store::Read;

/// Most users one message may mention by id.
pub const MAX_MENTIONS: usize = 50;

/// Whom a message mentions: `[USER_ID, ...]` or `"all"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mentions {
    /// Every member (`"all"`).
    All,
    /// These users, distinct, ascending.
    Users(Vec<u64>),
}

impl Serialize for Mentions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Mentions::All => s.serialize_str("all"),
            Mentions::Users(ids) => ids.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Mentions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) if s == "all" => Ok(Mentions::All),
            Value::Array(items) => {
                let mut ids = items
                    .iter()
                    .map(|v| {
                        v.as_u64()
                            .filter(|&id| id <= crate::api::int64::MAX)
                            .ok_or_else(|| D::Error::custom("mentions: user ids are integers"))
                    })
                    .collect::<Result<Vec<u64>, _>>()?;
                ids.sort_unstable();
                ids.dedup();
                Ok(Mentions::Users(ids))
            }
            _ => Err(D::Error::custom(
                "mentions must be an array of user ids or \"all\"",
            )),
        }
    }
}

impl Mentions {
    /// The stored column: JSON, as on the wire.
    fn to_column(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "[]".into())
    }

    fn from_column(column: &str) -> Option<Self> {
        serde_json::from_str(column).ok()
    }

    /// Does this mention `user` in a message from `sender`? Nobody is
    /// mentioned by their own message.
    pub fn includes(&self, user: u64, sender: u64) -> bool {
        user != sender
            && match self {
                Mentions::All => true,
                Mentions::Users(ids) => ids.binary_search(&user).is_ok(),
            }
    }
}

/// A reply's quote of the message it answers, as that message reads now.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Quote {
    /// The message replied to (the reply's `reply_to`).
    pub id: u64,
    /// Its sender; null once it is gone from the store.
    #[schema(required = true)]
    pub sender_id: Option<u64>,
    /// At most 100 characters of its text; null when it has none, or once
    /// it is recalled or expired.
    #[schema(required = true)]
    pub snippet: Option<String>,
    /// Recalled, expired or gone: show a tombstone.
    pub removed: bool,
}

#[derive(Deserialize)]
struct QuoteColumn {
    sender_id: u64,
    removed: bool,
    snippet: Option<String>,
}

impl Quote {
    fn read(id: u64, column: Option<&str>) -> Self {
        match column.and_then(|c| serde_json::from_str::<QuoteColumn>(c).ok()) {
            Some(q) => Quote {
                id,
                sender_id: Some(q.sender_id),
                snippet: q.snippet.filter(|_| !q.removed),
                removed: q.removed,
            },
            None => Quote {
                id,
                sender_id: None,
                snippet: None,
                removed: true,
            },
        }
    }
}

/// Where a forwarded copy came from: who wrote it and in what kind of
/// conversation. Never the original's conversation or message id, which
/// the copy's readers may have no right to know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ForwardedFrom {
    /// The original's sender.
    pub sender_id: u64,
    /// `direct` or `group`.
    pub conversation_kind: String,
    /// When the original was sent, Unix ms.
    pub sent_at: i64,
}

/// The fields a message's extras add to its wire shape.
pub(crate) struct Shown {
    pub reply_to: Option<u64>,
    pub quote: Option<Quote>,
    pub mentions: Option<Mentions>,
    pub forwarded_from: Option<ForwardedFrom>,
}

impl Shown {
    pub(crate) fn of(extras: Option<&MessageExtras>) -> Self {
        let Some(x) = extras else {
            return Shown {
                reply_to: None,
                quote: None,
                mentions: None,
                forwarded_from: None,
            };
        };
        Shown {
            reply_to: x.reply_to,
            quote: x.reply_to.map(|id| Quote::read(id, x.quote.as_deref())),
            mentions: x.mentions.as_deref().and_then(Mentions::from_column),
            forwarded_from: x
                .forwarded_from
                .as_deref()
                .and_then(|f| serde_json::from_str(f).ok()),
        }
    }
}

/// Does `row` mention `user`? What flags `mentioned` on the user's
/// `message.created` event and in the offline-message webhook (and what a
/// muted conversation would still notify for).
pub(crate) fn mentions_user(row: &MessageRow, user: u64) -> bool {
    row.extras
        .as_ref()
        .and_then(|x| x.mentions.as_deref())
        .and_then(Mentions::from_column)
        .is_some_and(|m| m.includes(user, row.sender_id))
}

/// What a send adds to a plain one, as it was asked for.
#[derive(Debug, Clone, Default)]
pub struct SendExtras {
    pub reply_to: Option<u64>,
    pub mentions: Option<Mentions>,
    /// Set by [`Chat::forward`] only.
    pub(crate) forwarded_from: Option<ForwardedFrom>,
}

impl SendExtras {
    pub fn is_empty(&self) -> bool {
        self.reply_to.is_none() && self.mentions.is_none() && self.forwarded_from.is_none()
    }

    /// The checks that need no store (before queueing), then the columns
    /// to write.
    pub(crate) fn columns(
        self,
        sender: u64,
        to: Recipient,
    ) -> Result<Option<MessageExtras>, DomainError> {
        if self.is_empty() {
            return Ok(None);
        }
        if let Some(Mentions::Users(ids)) = &self.mentions {
            if ids.is_empty() {
                return Err(DomainError::InvalidMention(
                    "mentions must name at least one user".into(),
                ));
            }
            if ids.len() > MAX_MENTIONS {
                return Err(DomainError::InvalidMention(format!(
                    "at most {MAX_MENTIONS} users may be mentioned"
                )));
            }
            // The members of a direct conversation are its two users.
            if let Recipient::User(peer) = to {
                if ids.iter().any(|&id| id != peer && id != sender) {
                    return Err(DomainError::InvalidMention(
                        "only members of the conversation can be mentioned".into(),
                    ));
                }
            }
        }
        Ok(Some(MessageExtras {
            reply_to: self.reply_to,
            quote: None,
            mentions: self.mentions.as_ref().map(Mentions::to_column),
            forwarded_from: self
                .forwarded_from
                .as_ref()
                .and_then(|f| serde_json::to_string(f).ok()),
        }))
    }
}

/// The checks of a send's reply and mentions, on the writer, once its
/// conversation is known (`None`: a direct conversation not created yet).
/// Returns the quote of the target, for the push. Reads only.
pub(crate) fn check(
    c: &crate::store::Tx<'_>,
    item: &SendItem,
    conversation: Option<u64>,
) -> Result<Option<String>, DomainError> {
    let Some(extras) = item.extras.as_ref() else {
        return Ok(None);
    };
    let mut quote = None;
    if let Some(target) = extras.reply_to {
        let found = match conversation {
            Some(conversation) => store::reply_target(c, target, item.sender)?
                .filter(|t| t.conversation_id == conversation && t.visible),
            None => None,
        };
        let found = found.ok_or_else(|| {
            DomainError::InvalidReply(
                "reply_to must be a message of this conversation that you can see".into(),
            )
        })?;
        quote = Some(found.quote);
    }
    let Recipient::Group(group) = item.to else {
        return Ok(quote);
    };
    let Some(conversation) = conversation else {
        return Ok(quote);
    };
    match extras.mentions.as_deref().and_then(Mentions::from_column) {
        Some(Mentions::Users(ids)) if store::members_among(c, conversation, &ids)? != ids.len() => {
            return Err(DomainError::InvalidMention(
                "only members of the conversation can be mentioned".into(),
            ));
        }
        Some(Mentions::All) => {
            let policy = store::mention_all(c, group)?.unwrap_or_else(|| ADMINS.into());
            if policy != MEMBERS {
                let role = messages_store::membership(c, item.sender, conversation)?
                    .map(|m| m.role)
                    .unwrap_or_default();
                if role != "owner" && role != "admin" {
                    return Err(DomainError::Forbidden(
                        "only the group's owner and admins may mention \"all\"".into(),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(quote)
}

const ADMINS: &str = "admins";
const MEMBERS: &str = "members";

/// Who may mention `"all"` in a group.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MentionAll {
    /// The owner and admins (the default).
    Admins,
    /// Every member.
    Members,
}

impl MentionAll {
    fn as_str(self) -> &'static str {
        match self {
            MentionAll::Admins => ADMINS,
            MentionAll::Members => MEMBERS,
        }
    }

    pub(crate) fn read(c: &impl Read, group: u64) -> Result<Self, DomainError> {
        Ok(match store::mention_all(c, group)?.as_deref() {
            Some(MEMBERS) => MentionAll::Members,
            _ => MentionAll::Admins,
        })
    }
}

impl Chat {
    /// Sets who may mention `"all"` in a group (its owner or an admin);
    /// the members get a system message saying so.
    pub async fn set_mention_all(
        &self,
        caller: Caller,
        group_id: u64,
        policy: MentionAll,
    ) -> Result<(), DomainError> {
        let actor = caller.user_id;
        self.charge_group(actor, group_id, 0).await?;
        self.group_write(move |c, out, now| {
            let (group, role) = super::groups::load(c, group_id, actor)?;
            super::groups::require(&role, &["owner", "admin"], "change the group's settings")?;
            if MentionAll::read(c, group.id)? == policy {
                return Ok(());
            }
            store::set_mention_all(c, group.id, policy.as_str())?;
            super::groups::system(
                c,
                out,
                &group,
                actor,
                serde_json::json!({"event": "settings_changed", "actor": actor, "mention_all": policy}),
                now,
            )
        })
        .await
    }

    /// Copies a message the caller can see into a conversation the caller
    /// may send to, as a send of the caller's (idempotent on
    /// `client_msg_id`, checked and counted as any send), with
    /// [`ForwardedFrom`]. The files it references go with it: the caller
    /// may read them, as a member who sees the original, so the copy
    /// references them as any send would, and the copy's readers may
    /// download them.
    pub async fn forward(
        &self,
        caller: Caller,
        message_id: u64,
        to: Recipient,
        client_msg_id: String,
    ) -> Result<super::messages::Sent, DomainError> {
        let row = self.visible_message(caller, message_id).await?;
        if row.kind != "user" || row.recalled_at.is_some() || row.body == "{}" {
            return Err(DomainError::Conflict(
                "only a message with content can be forwarded".into(),
            ));
        }
        let forwarded_from = ForwardedFrom {
            sender_id: row.sender_id,
            conversation_kind: if row.to_group.is_some() {
                "group".into()
            } else {
                "direct".into()
            },
            sent_at: row.sent_at,
        };
        let body = serde_json::value::RawValue::from_string(row.body)
            .map_err(|e| DomainError::internal_from("decoding a stored message", e))?;
        let new = super::messages::NewMessage {
            to,
            client_msg_id,
            body,
            extras: SendExtras {
                forwarded_from: Some(forwarded_from),
                ..SendExtras::default()
            },
        };
        self.send(caller, new).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_parse_as_ids_or_all() {
        let m: Mentions = serde_json::from_str("[3, 2, 3]").unwrap_or(Mentions::All);
        assert_eq!(m, Mentions::Users(vec![2, 3]));
        assert_eq!(serde_json::to_string(&m).ok().as_deref(), Some("[2,3]"));
        let all: Mentions = serde_json::from_str("\"all\"").unwrap_or(Mentions::Users(vec![]));
        assert_eq!(all, Mentions::All);
        assert!(serde_json::from_str::<Mentions>("\"everyone\"").is_err());
        assert!(serde_json::from_str::<Mentions>("[-1]").is_err());
        assert!(all.includes(2, 1) && !all.includes(1, 1));
        assert!(m.includes(2, 1) && !m.includes(4, 1));
    }

    #[test]
    fn a_quote_of_a_removed_or_missing_target_is_a_tombstone() {
        let q = Quote::read(7, Some(r#"{"sender_id":2,"removed":false,"snippet":"hi"}"#));
        assert_eq!(q.snippet.as_deref(), Some("hi"));
        let gone = Quote::read(7, Some(r#"{"sender_id":2,"removed":true,"snippet":"x"}"#));
        assert_eq!((gone.snippet, gone.removed), (None, true));
        let missing = Quote::read(7, None);
        assert_eq!((missing.sender_id, missing.removed), (None, true));
    }
}
