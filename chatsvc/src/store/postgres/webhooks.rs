//! PostgreSQL: [`crate::store::webhooks`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::webhooks::DeliveryRow;
use crate::store::webhooks::WebhookRow;
use crate::store::StoreError;

pub fn create(
    c: &Session<'_>,
    url: &str,
    secret: &str,
    events: &[String],
    now: i64,
) -> Result<WebhookRow, StoreError> {
    todo!("webhooks::create")
}

pub fn disable(c: &Session<'_>, id: u64, now: i64) -> Result<bool, StoreError> {
    todo!("webhooks::disable")
}

pub fn active(c: &Session<'_>) -> Result<Vec<WebhookRow>, StoreError> {
    todo!("webhooks::active")
}

pub fn active_to_send(c: &Session<'_>) -> Result<Vec<WebhookRow>, StoreError> {
    todo!("webhooks::active_to_send")
}

pub fn enqueue(
    c: &Session<'_>,
    webhook_id: u64,
    event: &str,
    payload: &str,
    now: i64,
) -> Result<u64, StoreError> {
    todo!("webhooks::enqueue")
}

pub fn due(c: &Session<'_>, now: i64, limit: usize) -> Result<Vec<DeliveryRow>, StoreError> {
    todo!("webhooks::due")
}

pub fn delivered(c: &Session<'_>, id: u64, generation: u64, now: i64) -> Result<(), StoreError> {
    todo!("webhooks::delivered")
}

pub fn failed(
    c: &Session<'_>,
    id: u64,
    generation: u64,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), StoreError> {
    todo!("webhooks::failed")
}

pub fn replay(c: &Session<'_>, webhook_id: u64, after: u64, now: i64) -> Result<usize, StoreError> {
    todo!("webhooks::replay")
}

pub fn pending(c: &Session<'_>) -> Result<u64, StoreError> {
    todo!("webhooks::pending")
}
