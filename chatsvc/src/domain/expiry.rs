//! Disappearing messages and retention: a conversation's message TTL, and
//! the sweeper that removes messages once their time has come.
//!
//! What a reader sees never waits for the sweeper: history, search and
//! sync compare each message's `expires_at` with the time of the read
//! (`store::expiry`). The sweeper ([`Chat::run_sweeper`]) then removes the
//! content from the store, as a recall does, unlinks and deletes the
//! attachments no other message references, and tells the members
//! (`message.expired`, a stored event with a cursor, so a device that was
//! offline learns it by sync or from its persistent MQTT session). Each
//! pass is one write of at most `--sweep-batch` messages
//! ([`Limits::sweep_batch`](super::Limits)), so a burst of expiries shares
//! the writer with sends instead of stalling them: a send that meets a
//! pass in its group commit waits for that pass alone.
//! Retention (`--retention-days`) removes what is older than the operator
//! keeps, the same way and as boundedly, without an event: history just
//! ends there.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::events::Stored;
use super::groups::system;
use super::outbox::Outbox;
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::expiry::{self as store, Removed, MAX_TTL_SECONDS, MIN_TTL_SECONDS};
use crate::store::{files, groups, messages};

pub use crate::store::expiry::MESSAGE_EXPIRED;

/// Most messages one sweep pass removes by default (`--sweep-batch`).
pub const DEFAULT_SWEEP_BATCH: usize = 100;
/// How often the sweeper looks for due messages when there is no backlog.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The pause between two full passes while a backlog drains: the writer
/// commits the sends queued meanwhile without a pass among them.
pub const SWEEP_BREATH: Duration = Duration::from_millis(10);

/// What one sweep pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Messages removed by their TTL.
    pub expired: usize,
    /// Messages removed by retention.
    pub retired: usize,
    /// Attachments deleted because nothing references them any more.
    pub files: usize,
}

impl Swept {
    /// Did a kind of removal take a full batch of `batch` (so more may be
    /// waiting)?
    fn full(&self, batch: usize) -> bool {
        self.expired >= batch || self.retired >= batch
    }
}

impl Chat {
    /// Sets (`Some` seconds; 0 is off) or clears the message TTL of a
    /// conversation the caller is in: either person in a direct
    /// conversation, owners and admins in a group. Every member gets
    /// `conversation.message_ttl`; a group also gets a system message, as
    /// for its other changes. Messages sent afterwards disappear that long
    /// after they were sent. Returns the TTL now in force.
    pub async fn set_message_ttl(
        &self,
        caller: Caller,
        conversation_id: u64,
        ttl_seconds: Option<u64>,
    ) -> Result<Option<u64>, DomainError> {
        let ttl = ttl_seconds.filter(|&t| t != 0);
        if let Some(t) = ttl {
            if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&t) {
                return Err(DomainError::Invalid(format!(
                    "message_ttl_seconds must be {MIN_TTL_SECONDS}-{MAX_TTL_SECONDS}, or 0 or null for off"
                )));
            }
        }
        let actor = caller.user_id;
        self.charge_conversation(actor, conversation_id).await?;
        let downlink = self.downlink.clone();
        self.store
            .write_then(
                move |c| {
                    let member = messages::membership(c, actor, conversation_id)?
                        .ok_or(DomainError::NotFound("conversation"))?;
                    let conversation = store::message_ttl(c, conversation_id)?
                        .ok_or(DomainError::NotFound("conversation"))?;
                    let mut out = Outbox::default();
                    let group = match conversation.group_id {
                        Some(id) => {
                            if !matches!(member.role.as_str(), "owner" | "admin") {
                                return Err(DomainError::Forbidden(
                                    "only the group's owner or admins may set disappearing messages"
                                        .into(),
                                ));
                            }
                            Some(groups::by_id(c, id)?.ok_or(DomainError::NotFound("group"))?)
                        }
                        None => None,
                    };
                    if conversation.ttl_seconds == ttl {
                        return Ok((ttl, out));
                    }
                    store::set_message_ttl(c, conversation_id, ttl)?;
                    if let Some(group) = &group {
                        let event = json!({
                            "event": "message_ttl_changed",
                            "actor": actor,
                            "message_ttl_seconds": ttl,
                        });
                        system(c, &mut out, group, actor, event, now_ms())?;
                    }
                    let event = Stored::ConversationMessageTtl {
                        conversation_id,
                        user_id: actor,
                        message_ttl_seconds: ttl,
                    };
                    for member in messages::members(c, conversation_id)? {
                        out.emit(c, member, &event)?;
                    }
                    Ok::<_, DomainError>((ttl, out))
                },
                move |(_, out): &(Option<u64>, Outbox)| out.push(&*downlink),
            )
            .await
            .map(|(ttl, _)| ttl)
    }

    /// One sweep pass at `now`: up to `--sweep-batch` messages past their
    /// `expires_at` removed, each member told (`message.expired`); with
    /// retention on, up to as many messages older than it removed too;
    /// then the attachments they referenced that nothing references any
    /// more deleted, rows and (once no row names the blob) bytes.
    pub async fn sweep(&self, now: i64) -> Result<Swept, DomainError> {
        let retention = self.limits.retention;
        let batch = self.limits.sweep_batch.max(1);
        let downlink = self.downlink.clone();
        let ((swept, blobs), _) = self
            .store
            .write_then(
                move |c| {
                    let mut out = Outbox::default();
                    let expired = store::expire_due(c, now, batch)?;
                    for Removed { row, .. } in &expired {
                        let deliveries = messages::fan_out(c, row, MESSAGE_EXPIRED)?;
                        out.message(MESSAGE_EXPIRED, row, deliveries);
                    }
                    let retired = match retention {
                        Some(keep) => {
                            let before = now.saturating_sub(keep.as_millis() as i64);
                            store::retire_before(c, before, now, batch)?
                        }
                        None => Vec::new(),
                    };
                    let unlinked: Vec<String> = expired
                        .iter()
                        .chain(&retired)
                        .flat_map(|r| r.files.iter().cloned())
                        .collect();
                    let deleted = store::delete_unreferenced_files(c, &unlinked)?;
                    let mut blobs = Vec::new();
                    for (_, sha) in &deleted {
                        if !files::blob_in_use(c, sha)? && !blobs.contains(sha) {
                            blobs.push(sha.clone());
                        }
                    }
                    let swept = Swept {
                        expired: expired.len(),
                        retired: retired.len(),
                        files: deleted.len(),
                    };
                    Ok::<_, DomainError>(((swept, blobs), out))
                },
                move |(_, out): &((Swept, Vec<String>), Outbox)| out.push(&*downlink),
            )
            .await?;
        if let Some(dir) = &self.files_dir {
            for sha in blobs {
                let _ = tokio::fs::remove_file(super::files::blob_path(dir, &sha)).await;
            }
        }
        metrics::counter!(crate::metrics::MESSAGES_SWEPT_TOTAL, "reason" => crate::metrics::SWEPT_TTL)
            .increment(swept.expired as u64);
        metrics::counter!(crate::metrics::MESSAGES_SWEPT_TOTAL, "reason" => crate::metrics::SWEPT_RETENTION)
            .increment(swept.retired as u64);
        Ok(swept)
    }

    /// The sweeper: a pass each [`SWEEP_EVERY`], and while a backlog
    /// drains, a pass after each [`SWEEP_BREATH`], until `shutdown`.
    pub async fn run_sweeper(self, shutdown: CancellationToken) {
        let mut wait = SWEEP_EVERY;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = match self.sweep(now_ms()).await {
                Ok(swept) if swept.full(self.limits.sweep_batch.max(1)) => SWEEP_BREATH,
                Ok(swept) => {
                    if swept != Swept::default() {
                        tracing::debug!(?swept, "swept messages");
                    }
                    SWEEP_EVERY
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping expired messages");
                    SWEEP_EVERY
                }
            };
        }
    }
}
