//! Sending, history, conversations and sync.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::model::{Conversation, Event, Message, Recipient, SyncPage, User};
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::messages::{self as store, SendOutcome};
use crate::store::users;

/// A validated send request.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub to: Recipient,
    pub client_msg_id: String,
    pub body: Box<RawValue>,
}

/// What a send returns: the stored message, and whether it was stored by
/// this request (false: an idempotent resend).
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

impl Chat {
    fn validate(&self, m: &NewMessage) -> Result<(), DomainError> {
        let id_len = m.client_msg_id.chars().count();
        if !(1..=64).contains(&id_len) || m.client_msg_id.chars().any(char::is_control) {
            return Err(DomainError::Invalid(
                "client_msg_id must be 1-64 characters, no control characters".into(),
            ));
        }
        let raw = m.body.get();
        if raw.len() > self.limits.max_body_bytes {
            return Err(DomainError::Invalid(format!(
                "body is larger than {} bytes",
                self.limits.max_body_bytes
            )));
        }
        let body: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| DomainError::Invalid(format!("body: {e}")))?;
        let Some(obj) = body.as_object() else {
            return Err(DomainError::Invalid("body must be a JSON object".into()));
        };
        if obj.is_empty() {
            return Err(DomainError::Invalid("body must not be empty".into()));
        }
        if let Some(text) = obj.get("text") {
            let ok = text.as_str().is_some_and(|t| {
                let n = t.chars().count();
                n >= 1 && n <= self.limits.max_text_chars
            });
            if !ok {
                return Err(DomainError::Invalid(format!(
                    "body.text must be a string of 1-{} characters",
                    self.limits.max_text_chars
                )));
            }
        }
        Ok(())
    }

    /// Stores a message and, after commit, pushes it to the recipient and to
    /// the sender's other devices. Idempotent on `(sender, client_msg_id)`.
    pub async fn send(&self, caller: Caller, m: NewMessage) -> Result<Sent, DomainError> {
        self.validate(&m)?;
        let recipient = match m.to {
            Recipient::User(id) => id,
            Recipient::Group(_) => return Err(DomainError::NotFound("group")),
        };
        let sender = caller.user_id;
        let now = now_ms();
        let downlink = self.downlink.clone();
        let body = m.body.get().to_owned();
        let client_msg_id = m.client_msg_id;
        let outcome = self
            .store
            .write_then(
                move |c| store::send_direct(c, sender, recipient, &client_msg_id, &body, now),
                move |outcome| {
                    if let SendOutcome::Created {
                        message,
                        deliveries,
                    } = outcome
                    {
                        push_created(&*downlink, message, deliveries);
                    }
                },
            )
            .await
            .map_err(|e| match e {
                crate::store::StoreError::NotFound(_) => DomainError::NotFound("recipient"),
                e => e.into(),
            })?;
        let (row, created) = match outcome {
            SendOutcome::Created { message, .. } => (message, true),
            SendOutcome::Duplicate(message) => (message, false),
        };
        metrics::counter!("messages_accepted_total", "created" => created.to_string()).increment(1);
        let message = Message::try_from(row).map_err(|e| DomainError::Internal(e.to_string()))?;
        Ok(Sent { message, created })
    }

    /// Events after `after`, at most `limit` (capped by the page limit).
    pub async fn sync(
        &self,
        caller: Caller,
        after: u64,
        limit: usize,
    ) -> Result<SyncPage, DomainError> {
        let limit = limit.clamp(1, self.limits.max_page);
        let user = caller.user_id;
        let rows = self
            .store
            .read(move |c| store::sync(c, user, after, limit + 1))
            .await?;
        let has_more = rows.len() > limit;
        let events = rows
            .into_iter()
            .take(limit)
            .map(Event::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(DomainError::Internal)?;
        let cursor = events.last().map_or(after, Event::cursor);
        metrics::counter!("events_synced_total").increment(events.len() as u64);
        Ok(SyncPage {
            events,
            cursor,
            has_more,
        })
    }

    /// Records the cursor a device has processed; returns the stored value
    /// (it never moves backwards).
    pub async fn ack(
        &self,
        caller: Caller,
        device_id: String,
        cursor: u64,
    ) -> Result<u64, DomainError> {
        if !(1..=64).contains(&device_id.chars().count()) || device_id.chars().any(char::is_control)
        {
            return Err(DomainError::Invalid(
                "device_id must be 1-64 characters".into(),
            ));
        }
        let user = caller.user_id;
        let head = self.store.read(move |c| store::inbox_head(c, user)).await?;
        if cursor > head {
            return Err(DomainError::Invalid(format!(
                "cursor {cursor} is past the newest event ({head})"
            )));
        }
        let now = now_ms();
        Ok(self
            .store
            .write(move |c| store::ack(c, user, &device_id, cursor, now))
            .await?)
    }

    pub async fn history(
        &self,
        caller: Caller,
        conversation_id: u64,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), DomainError> {
        let limit = limit.clamp(1, self.limits.max_page);
        let user = caller.user_id;
        let rows = self
            .store
            .read(move |c| store::history(c, user, conversation_id, before_seq, limit + 1))
            .await?
            .ok_or(DomainError::NotFound("conversation"))?;
        let has_more = rows.len() > limit;
        let skip = rows.len().saturating_sub(limit);
        let messages = rows
            .into_iter()
            .skip(skip)
            .map(Message::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        Ok((messages, has_more))
    }

    pub async fn conversations(
        &self,
        caller: Caller,
        limit: usize,
    ) -> Result<Vec<Conversation>, DomainError> {
        let limit = limit.clamp(1, self.limits.max_page);
        let user = caller.user_id;
        self.store
            .read(move |c| {
                let rows = store::conversations(c, user, limit)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let peer = match row.peer_id {
                        Some(id) => users::by_id(c, id)?.map(User::from),
                        None => None,
                    };
                    out.push(Conversation::from_row(row, peer)?);
                }
                Ok(out)
            })
            .await
            .map_err(DomainError::from)
    }
}

/// Serializes the event for each delivery and hands it to the downlink.
fn push_created(
    downlink: &dyn super::Downlink,
    row: &crate::store::messages::MessageRow,
    deliveries: &[(u64, u64)],
) {
    let message = match Message::try_from(row.clone()) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "stored body is not JSON");
            return;
        }
    };
    for &(user_id, cursor) in deliveries {
        let event = Event::MessageCreated {
            cursor,
            message: message.clone(),
        };
        match serde_json::to_vec(&event) {
            Ok(bytes) => {
                if downlink.push(user_id, Bytes::from(bytes)) {
                    metrics::counter!("events_pushed_total").increment(1);
                }
            }
            Err(e) => tracing::error!(error = %e, "serialize event"),
        }
    }
}
