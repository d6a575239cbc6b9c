//! PostgreSQL: [`crate::store::messages`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::messages::ConversationRow;
use crate::store::messages::DirectRoute;
use crate::store::messages::InboxRow;
use crate::store::messages::Membership;
use crate::store::messages::MessageRow;
use crate::store::messages::NewRow;
use crate::store::StoreError;

pub fn append(
    c: &Session<'_>,
    user_id: u64,
    kind: &str,
    message_id: Option<u64>,
    payload: Option<&str>,
) -> Result<u64, StoreError> {
    todo!("messages::append")
}

pub fn by_client_id(
    c: &Session<'_>,
    sender: u64,
    client_msg_id: &str,
) -> Result<Option<MessageRow>, StoreError> {
    todo!("messages::by_client_id")
}

pub fn by_id(c: &Session<'_>, id: u64) -> Result<Option<MessageRow>, StoreError> {
    todo!("messages::by_id")
}

pub fn direct_conversation(c: &Session<'_>, a: u64, b: u64, now: i64) -> Result<u64, StoreError> {
    todo!("messages::direct_conversation")
}

pub fn direct_route(
    c: &Session<'_>,
    sender: u64,
    peer: u64,
) -> Result<Option<DirectRoute>, StoreError> {
    todo!("messages::direct_route")
}

pub fn add_member(
    c: &Session<'_>,
    conversation_id: u64,
    user_id: u64,
    role: &str,
    now: i64,
) -> Result<(), StoreError> {
    todo!("messages::add_member")
}

pub fn remove_member(
    c: &Session<'_>,
    conversation_id: u64,
    user_id: u64,
) -> Result<bool, StoreError> {
    todo!("messages::remove_member")
}

// Placeholder from branch pgb (groups::dissolve calls it), with SQLite's
// signature; branch pgc owns this file and writes it: take theirs.
pub(super) fn record_departures(
    c: &Session<'_>,
    conversation_id: u64,
    user: Option<u64>,
) -> Result<(), StoreError> {
    todo!("messages::record_departures")
}

pub fn set_role(
    c: &Session<'_>,
    conversation_id: u64,
    user_id: u64,
    role: &str,
) -> Result<(), StoreError> {
    todo!("messages::set_role")
}

pub fn membership(
    c: &Session<'_>,
    user_id: u64,
    conversation_id: u64,
) -> Result<Option<Membership>, StoreError> {
    todo!("messages::membership")
}

pub fn member_count(c: &Session<'_>, conversation_id: u64) -> Result<usize, StoreError> {
    todo!("messages::member_count")
}

pub fn members(c: &Session<'_>, conversation_id: u64) -> Result<Vec<u64>, StoreError> {
    todo!("messages::members")
}

pub fn members_with_roles(
    c: &Session<'_>,
    conversation_id: u64,
) -> Result<Vec<(u64, String)>, StoreError> {
    todo!("messages::members_with_roles")
}

pub fn insert(c: &Session<'_>, new: &NewRow<'_>) -> Result<Option<MessageRow>, StoreError> {
    todo!("messages::insert")
}

pub fn fan_out(
    c: &Session<'_>,
    message: &MessageRow,
    kind: &str,
) -> Result<Vec<(u64, u64)>, StoreError> {
    todo!("messages::fan_out")
}

pub fn edit(c: &Session<'_>, id: u64, body: &str, now: i64) -> Result<(), StoreError> {
    todo!("messages::edit")
}

pub fn recall(c: &Session<'_>, id: u64, now: i64) -> Result<(), StoreError> {
    todo!("messages::recall")
}

pub fn hide(c: &Session<'_>, user_id: u64, id: u64) -> Result<(), StoreError> {
    todo!("messages::hide")
}

pub fn sync(
    c: &Session<'_>,
    user_id: u64,
    after: u64,
    limit: usize,
) -> Result<Vec<InboxRow>, StoreError> {
    todo!("messages::sync")
}

pub fn inbox_head(c: &Session<'_>, user_id: u64) -> Result<u64, StoreError> {
    todo!("messages::inbox_head")
}

pub fn history(
    c: &Session<'_>,
    user_id: u64,
    conversation_id: u64,
    before_seq: Option<u64>,
    limit: usize,
) -> Result<Option<Vec<MessageRow>>, StoreError> {
    todo!("messages::history")
}

pub fn conversations(
    c: &Session<'_>,
    user_id: u64,
    limit: usize,
) -> Result<Vec<ConversationRow>, StoreError> {
    todo!("messages::conversations")
}

pub fn mark_read(
    c: &Session<'_>,
    user_id: u64,
    conversation_id: u64,
    seq: u64,
) -> Result<(u64, u64), StoreError> {
    todo!("messages::mark_read")
}

pub fn senders_between(
    c: &Session<'_>,
    conversation_id: u64,
    reader: u64,
    from: u64,
    to: u64,
) -> Result<Vec<u64>, StoreError> {
    todo!("messages::senders_between")
}

pub fn ack(
    c: &Session<'_>,
    user_id: u64,
    device_id: &str,
    cursor: u64,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    todo!("messages::ack")
}

pub fn delivered_between(
    c: &Session<'_>,
    user_id: u64,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, u64, u64)>, StoreError> {
    todo!("messages::delivered_between")
}

pub fn search(
    c: &Session<'_>,
    user_id: u64,
    query: &str,
    limit: usize,
) -> Result<Vec<MessageRow>, StoreError> {
    todo!("messages::search")
}

pub fn unread(c: &Session<'_>, user_id: u64, conversation_id: u64) -> Result<u64, StoreError> {
    todo!("messages::unread")
}
