//! PostgreSQL: [`crate::store::files`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::files::{FileRow, Usage};
use crate::store::StoreError;

pub fn insert(c: &Session<'_>, f: &FileRow) -> Result<(), StoreError> {
    todo!("files::insert")
}

pub fn by_id(c: &Session<'_>, id: &str) -> Result<Option<FileRow>, StoreError> {
    todo!("files::by_id")
}

pub fn usage(c: &Session<'_>, user: u64, since: i64) -> Result<Usage, StoreError> {
    todo!("files::usage")
}

pub fn content_type(c: &Session<'_>, id: &str) -> Result<Option<String>, StoreError> {
    todo!("files::content_type")
}

pub fn link(c: &Session<'_>, message_id: u64, file_id: &str) -> Result<(), StoreError> {
    todo!("files::link")
}

pub fn may_read(c: &Session<'_>, user: u64, file_id: &str) -> Result<bool, StoreError> {
    todo!("files::may_read")
}

pub fn delete_unreferenced(
    c: &Session<'_>,
    before: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    todo!("files::delete_unreferenced")
}

pub fn blob_in_use(c: &Session<'_>, sha256: &str) -> Result<bool, StoreError> {
    todo!("files::blob_in_use")
}
