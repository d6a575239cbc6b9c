//! PostgreSQL: [`crate::store::sessions`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::sessions::Rotation;

use crate::store::StoreError;

pub fn create(
    c: &Session<'_>,
    user_id: u64,
    refresh_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<u64, StoreError> {
    todo!("sessions::create")
}

pub fn rotate(
    c: &Session<'_>,
    old_hash: &[u8],
    new_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> Result<Rotation, StoreError> {
    todo!("sessions::rotate")
}

pub fn revoke(c: &Session<'_>, session_id: u64, now: i64) -> Result<Option<u64>, StoreError> {
    todo!("sessions::revoke")
}

pub fn revoke_all(c: &Session<'_>, user_id: u64, now: i64) -> Result<Vec<u64>, StoreError> {
    todo!("sessions::revoke_all")
}

pub fn last_id(c: &Session<'_>) -> Result<u64, StoreError> {
    todo!("sessions::last_id")
}

pub fn revoked_since(c: &Session<'_>, since: i64) -> Result<Vec<(u64, i64)>, StoreError> {
    todo!("sessions::revoked_since")
}
