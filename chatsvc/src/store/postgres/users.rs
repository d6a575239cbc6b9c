//! PostgreSQL: [`crate::store::users`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::users::UserRow;
use crate::store::StoreError;

pub fn insert(
    c: &Session<'_>,
    username: &str,
    password_hash: &str,
    now: i64,
) -> Result<UserRow, StoreError> {
    todo!("users::insert")
}

pub fn group_add_policy(c: &Session<'_>, id: u64) -> Result<Option<String>, StoreError> {
    todo!("users::group_add_policy")
}

pub fn set_group_add_policy(c: &Session<'_>, id: u64, policy: &str) -> Result<(), StoreError> {
    todo!("users::set_group_add_policy")
}

pub fn by_id(c: &Session<'_>, id: u64) -> Result<Option<UserRow>, StoreError> {
    todo!("users::by_id")
}

pub fn credentials(
    c: &Session<'_>,
    username: &str,
) -> Result<Option<(UserRow, String)>, StoreError> {
    todo!("users::credentials")
}

pub fn by_username(c: &Session<'_>, username: &str) -> Result<Option<UserRow>, StoreError> {
    todo!("users::by_username")
}

pub fn set_display_name(
    c: &Session<'_>,
    id: u64,
    display_name: Option<&str>,
) -> Result<Option<UserRow>, StoreError> {
    todo!("users::set_display_name")
}

pub fn exists(c: &Session<'_>, id: u64) -> Result<bool, StoreError> {
    todo!("users::exists")
}

pub fn set_password_hash(c: &Session<'_>, id: u64, hash: &str) -> Result<bool, StoreError> {
    todo!("users::set_password_hash")
}
