//! Pinned messages: a conversation's short list of messages kept at hand.
//! In a direct conversation both people may pin; in a group the owner and
//! admins may, or every member when the group says so (`who_can_pin`).
//! Each pin and unpin is a stored event (`pin.added`, `pin.removed`) for
//! the members who can see the message.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::events::{PinChange, Stored};
use super::model::Message;
use super::outbox::Outbox;
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::messages::{self as messages, MessageRow};
use crate::store::pins::{self as store, PinRow, Pinned};
use crate::store::reactions::audience;
use crate::store::{Read, Tx};

/// Who may pin messages in a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PinPolicy {
    /// The owner and admins.
    #[default]
    Admins,
    /// Every member.
    Members,
}

impl PinPolicy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PinPolicy::Admins => "admins",
            PinPolicy::Members => "members",
        }
    }

    /// The stored value; unknown text counts as the narrower choice.
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "members" => PinPolicy::Members,
            _ => PinPolicy::Admins,
        }
    }
}

/// A pinned message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pin {
    pub message: Message,
    /// Who pinned it.
    pub pinned_by: u64,
    /// Unix ms.
    pub pinned_at: i64,
}

impl TryFrom<PinRow> for Pin {
    type Error = serde_json::Error;

    fn try_from(r: PinRow) -> Result<Self, Self::Error> {
        Ok(Pin {
            message: Message::try_from(r.message)?,
            pinned_by: r.pinned_by,
            pinned_at: r.pinned_at,
        })
    }
}

/// The message `message_id` of `conversation_id`, if `user` may pin or
/// unpin it there: a member who can see it, allowed by the group's policy.
fn pinnable(
    c: &Tx<'_>,
    user: u64,
    conversation_id: u64,
    message_id: u64,
) -> Result<MessageRow, DomainError> {
    let member = messages::membership(c, user, conversation_id)?
        .ok_or(DomainError::NotFound("conversation"))?;
    let row = messages::by_id(c, message_id)?
        .filter(|m| m.conversation_id == conversation_id && m.seq > member.joined_seq)
        .ok_or(DomainError::NotFound("message"))?;
    if let Some(policy) = store::policy(c, conversation_id)? {
        let admin = matches!(member.role.as_str(), "owner" | "admin");
        if PinPolicy::parse(&policy) == PinPolicy::Admins && !admin {
            return Err(DomainError::Forbidden(
                "only the group's owner or admins may pin messages".into(),
            ));
        }
    }
    Ok(row)
}

impl Chat {
    /// Pins a message of a conversation (pinned already: nothing changes).
    pub async fn pin(
        &self,
        caller: Caller,
        conversation_id: u64,
        message_id: u64,
    ) -> Result<(), DomainError> {
        self.change_pin(caller, conversation_id, message_id, true)
            .await
    }

    /// Unpins a message (not pinned: nothing changes).
    pub async fn unpin(
        &self,
        caller: Caller,
        conversation_id: u64,
        message_id: u64,
    ) -> Result<(), DomainError> {
        self.change_pin(caller, conversation_id, message_id, false)
            .await
    }

    async fn change_pin(
        &self,
        caller: Caller,
        conversation_id: u64,
        message_id: u64,
        pin: bool,
    ) -> Result<(), DomainError> {
        let user = caller.user_id;
        self.charge_conversation(user, conversation_id).await?;
        let now = now_ms();
        let max = self.limits.max_pins_per_conversation;
        let downlink = self.downlink.clone();
        self.store
            .write_then(
                move |c| {
                    let row = pinnable(c, user, conversation_id, message_id)?;
                    let changed = if pin {
                        if row.kind != "user" || row.recalled_at.is_some() {
                            return Err(DomainError::Conflict(
                                "only a message that is not recalled can be pinned".into(),
                            ));
                        }
                        match store::add(c, conversation_id, row.id, user, max, now)? {
                            Pinned::Added => true,
                            Pinned::Already => false,
                            Pinned::Full => {
                                return Err(DomainError::Conflict(format!(
                                    "a conversation has at most {max} pinned messages"
                                )))
                            }
                        }
                    } else {
                        store::remove(c, conversation_id, row.id)?
                    };
                    let mut out = Outbox::default();
                    if changed {
                        let change = PinChange {
                            conversation_id,
                            message_id: row.id,
                            user_id: user,
                        };
                        let event = if pin {
                            Stored::PinAdded(change)
                        } else {
                            Stored::PinRemoved(change)
                        };
                        for member in audience(c, conversation_id, row.seq)? {
                            out.emit(c, member, &event)?;
                        }
                    }
                    Ok::<_, DomainError>(out)
                },
                move |out: &Outbox| out.push(&*downlink),
            )
            .await
            .map(|_| ())
    }

    /// The conversation's pinned messages the caller can see, newest pin
    /// first, each with its reactions.
    pub async fn pins(
        &self,
        caller: Caller,
        conversation_id: u64,
    ) -> Result<Vec<Pin>, DomainError> {
        let user = caller.user_id;
        self.store
            .read(move |c| {
                let member = messages::membership(c, user, conversation_id)?
                    .ok_or(DomainError::NotFound("conversation"))?;
                let rows = store::list(c, conversation_id, member.joined_seq)?;
                let ids: Vec<u64> = rows.iter().map(|p| p.message.id).collect();
                let counts = super::reactions::read_counts(c, user, &ids)?;
                let mut pins = rows
                    .into_iter()
                    .map(Pin::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| DomainError::internal_from("decoding a pinned message", e))?;
                for pin in &mut pins {
                    super::reactions::attach(std::slice::from_mut(&mut pin.message), &counts);
                }
                Ok(pins)
            })
            .await
    }

    /// Sets who may pin in a group (owner or admin). A change is a
    /// system message (`pin_policy_changed`) to the members, so their
    /// devices learn of it.
    pub async fn set_pin_policy(
        &self,
        caller: Caller,
        group_id: u64,
        policy: PinPolicy,
    ) -> Result<(), DomainError> {
        use super::groups::{load, require, system, ADMIN, OWNER};
        let actor = caller.user_id;
        self.charge_group(actor, group_id, 0).await?;
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            require(&role, &[OWNER, ADMIN], "change who can pin")?;
            if policy_of(c, group.conversation_id)? == policy {
                return Ok(());
            }
            store::set_policy(c, group.id, policy.as_str())?;
            system(
                c,
                out,
                &group,
                actor,
                serde_json::json!({"event": "pin_policy_changed", "actor": actor, "who_can_pin": policy.as_str()}),
                now,
            )
        })
        .await
    }
}

/// A group conversation's pin policy (a direct one's is never read).
pub(crate) fn policy_of(c: &impl Read, conversation_id: u64) -> Result<PinPolicy, DomainError> {
    Ok(store::policy(c, conversation_id)?
        .as_deref()
        .map(PinPolicy::parse)
        .unwrap_or_default())
}
