//! Webhook endpoints and their delivery queue.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: u64,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
    pub created_at: i64,
}

impl WebhookRow {
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event)
    }
}

/// A delivery waiting (or retrying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: u64,
    pub webhook_id: u64,
    pub url: String,
    pub secret: String,
    pub event: String,
    pub payload: String,
    pub attempts: u32,
    pub generation: u64,
}

super::operations! {
    webhooks;
    write fn create(url: &str, secret: &str, events: &[String], now: i64) -> WebhookRow;
    write fn disable(id: u64, now: i64) -> bool;
    /// Active webhooks.
    read fn active() -> Vec<WebhookRow>;
    /// [`active`] on the writer, for every message sent.
    write fn active_to_send() -> Vec<WebhookRow>;
    write fn enqueue(webhook_id: u64, event: &str, payload: &str, now: i64) -> u64;
    /// Deliveries due at `now` for active webhooks, oldest first.
    read fn due(now: i64, limit: usize) -> Vec<DeliveryRow>;
    /// Records a successful attempt of `generation` (a replay since then wins).
    write fn delivered(id: u64, generation: u64, now: i64) -> ();
    /// Records a failed attempt of `generation` and when to try again.
    write fn failed(id: u64, generation: u64, next_attempt_at: i64, error: &str) -> ();
    /// Queues again every delivery of the webhook after `after` (replay).
    /// Returns how many.
    write fn replay(webhook_id: u64, after: u64, now: i64) -> usize;
    /// Deliveries not yet made (the queue depth).
    read fn pending() -> u64;
}
