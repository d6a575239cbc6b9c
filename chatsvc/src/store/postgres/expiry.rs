//! PostgreSQL: [`crate::store::expiry`].
//!
//! A sweep runs on a writer lane like every write that is not a send, so
//! it holds the cluster-wide write lock exclusively (`writer.rs`) and two
//! nodes' sweeps never run at once. It does not rely on that alone: it
//! takes its messages `FOR UPDATE SKIP LOCKED` and removes only those not
//! removed yet, so a message is returned (and `message.expired` sent
//! about it) by one sweep only, whatever the locking around it.

use super::messages::{message, message_columns, opt_uint, MESSAGE_WIDTH};
use super::Session;
use crate::store::expiry::{ConversationTtl, Removed};
use crate::store::StoreError;

/// Sets or clears a conversation's message TTL.
pub fn set_message_ttl(
    c: &Session<'_>,
    conversation_id: u64,
    ttl_seconds: Option<u64>,
) -> Result<(), StoreError> {
    let changed = c.execute(
        "UPDATE conversations SET message_ttl_seconds = $2 WHERE id = $1",
        &[&(conversation_id as i64), &ttl_seconds.map(|t| t as i64)],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    Ok(())
}

/// A conversation's kind, group and message TTL.
pub fn message_ttl(
    c: &Session<'_>,
    conversation_id: u64,
) -> Result<Option<ConversationTtl>, StoreError> {
    c.query_opt(
        "SELECT kind, group_id, message_ttl_seconds FROM conversations WHERE id = $1",
        &[&(conversation_id as i64)],
    )?
    .map(|r| {
        Ok(ConversationTtl {
            kind: r.try_get(0)?,
            group_id: opt_uint(&r, 1)?,
            ttl_seconds: opt_uint(&r, 2)?,
        })
    })
    .transpose()
}

/// Messages due at `now`, soonest first (the `messages_expiring` partial
/// index), locked, then removed.
pub fn expire_due(c: &Session<'_>, now: i64, limit: usize) -> Result<Vec<Removed>, StoreError> {
    let ids: Vec<i64> = c
        .query(
            "SELECT id FROM messages
             WHERE expires_at IS NOT NULL AND expired_at IS NULL AND expires_at <= $1
             ORDER BY expires_at LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[&now, &(limit as i64)],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    remove(c, &ids, now)
}

/// The next `limit` messages after the retention mark (locked for the
/// transaction), as far as they were sent before `before`: ids grow with
/// time, so the first one sent later ends the walk.
pub fn retire_before(
    c: &Session<'_>,
    before: i64,
    now: i64,
    limit: usize,
) -> Result<Vec<Removed>, StoreError> {
    let through: i64 = c
        .query_one(
            "SELECT through FROM retention_mark WHERE id = 1 FOR UPDATE",
            &[],
        )?
        .try_get(0)?;
    let rows = c.query(
        "SELECT id, sent_at, expired_at IS NOT NULL FROM messages
         WHERE id > $1 ORDER BY id LIMIT $2",
        &[&through, &(limit as i64)],
    )?;
    let mut last = None;
    let mut ids = Vec::new();
    for r in &rows {
        let (id, sent_at, removed): (i64, i64, bool) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if sent_at >= before {
            break;
        }
        last = Some(id);
        if !removed {
            ids.push(id);
        }
    }
    let Some(last) = last else {
        return Ok(Vec::new());
    };
    c.execute(
        "UPDATE retention_mark SET through = $1 WHERE id = 1",
        &[&last],
    )?;
    remove(c, &ids, now)
}

/// Removes the content of the messages `ids` not removed yet, as a recall
/// does (the body `{}`, which un-indexes its text, and earlier versions),
/// unlinks their files and marks them removed, in one statement; returns
/// them as they are now (the final SELECT reads what the UPDATE returned,
/// since the table itself still shows the statement's snapshot).
fn remove(c: &Session<'_>, ids: &[i64], now: i64) -> Result<Vec<Removed>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    c.query(
        concat!(
            "WITH gone AS (
             UPDATE messages m SET body = '{}', expired_at = $2,
                 expires_at = LEAST(COALESCE(m.expires_at, $2), $2)
             WHERE m.id = ANY($1) AND m.expired_at IS NULL
             RETURNING m.*
         ), versions AS (
             DELETE FROM message_versions v USING gone WHERE v.message_id = gone.id
         ), unlinked AS (
             DELETE FROM message_files mf USING gone WHERE mf.message_id = gone.id
             RETURNING mf.message_id, mf.file_id
         )
         SELECT ",
            message_columns!(),
            ",
                ARRAY(SELECT u.file_id FROM unlinked u WHERE u.message_id = m.id ORDER BY u.file_id)
         FROM gone m JOIN conversations c ON c.id = m.conversation_id
         ORDER BY m.expires_at, m.id"
        ),
        &[&ids, &now],
    )?
    .iter()
    .map(|r| {
        Ok(Removed {
            row: message(r, 0)?,
            files: r.try_get(MESSAGE_WIDTH)?,
        })
    })
    .collect()
}

/// Deletes the rows of those files no message references any more.
pub fn delete_unreferenced_files(
    c: &Session<'_>,
    ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c.query(
        "DELETE FROM files f WHERE f.id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM message_files mf WHERE mf.file_id = f.id)
         RETURNING f.id, f.sha256",
        &[&ids],
    )?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, StoreError>>()
}
