//! PostgreSQL: [`crate::store::services`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::services::ServiceKeyRow;
use crate::store::StoreError;

pub fn mark_bot(c: &Session<'_>, user_id: u64) -> Result<(), StoreError> {
    todo!("services::mark_bot")
}

pub fn create(
    c: &Session<'_>,
    user_id: u64,
    key_hash: &[u8],
    scopes: &[String],
    rate_per_sec: u32,
    now: i64,
) -> Result<ServiceKeyRow, StoreError> {
    todo!("services::create")
}

pub fn by_hash(c: &Session<'_>, key_hash: &[u8]) -> Result<Option<ServiceKeyRow>, StoreError> {
    todo!("services::by_hash")
}

pub fn revoke(c: &Session<'_>, id: u64, now: i64) -> Result<bool, StoreError> {
    todo!("services::revoke")
}

pub fn list(c: &Session<'_>) -> Result<Vec<ServiceKeyRow>, StoreError> {
    todo!("services::list")
}
