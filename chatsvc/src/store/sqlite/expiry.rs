//! SQLite: [`crate::store::expiry`].

use rusqlite::{params, Connection, OptionalExtension};

use super::fulltext::unindex_text;
use super::messages::by_id;
use crate::store::expiry::{ConversationTtl, Removed};
use crate::store::StoreError;

/// Sets or clears a conversation's message TTL.
pub fn set_message_ttl(
    c: &Connection,
    conversation_id: u64,
    ttl_seconds: Option<u64>,
) -> Result<(), StoreError> {
    let changed = c
        .prepare_cached("UPDATE conversations SET message_ttl_seconds = ?2 WHERE id = ?1")?
        .execute(params![conversation_id, ttl_seconds])?;
    if changed == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    Ok(())
}

/// A conversation's kind, group and message TTL.
pub fn message_ttl(
    c: &Connection,
    conversation_id: u64,
) -> Result<Option<ConversationTtl>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT kind, group_id, message_ttl_seconds FROM conversations WHERE id = ?1",
    )?
    .query_row([conversation_id], |r| {
        Ok(ConversationTtl {
            kind: r.get(0)?,
            group_id: r.get(1)?,
            ttl_seconds: r.get(2)?,
        })
    })
    .optional()?)
}

/// Messages due at `now`, soonest first, from the `messages_expiring`
/// partial index (which holds only those not removed yet), then removed.
/// The writer is the only one that writes, so no other sweep takes them.
pub fn expire_due(c: &Connection, now: i64, limit: usize) -> Result<Vec<Removed>, StoreError> {
    let ids = c
        .prepare_cached(
            "SELECT id FROM messages
             WHERE expires_at IS NOT NULL AND expired_at IS NULL AND expires_at <= ?1
             ORDER BY expires_at LIMIT ?2",
        )?
        .query_map(params![now, limit as i64], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    remove(c, &ids, now)
}

/// The next `limit` messages after the retention mark, as far as they
/// were sent before `before`: ids grow with time, so the first one sent
/// later ends the walk, and the mark moves past what was looked at.
pub fn retire_before(
    c: &Connection,
    before: i64,
    now: i64,
    limit: usize,
) -> Result<Vec<Removed>, StoreError> {
    let through: u64 = c
        .prepare_cached("SELECT through FROM retention_mark WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    let rows = c
        .prepare_cached(
            "SELECT id, sent_at, expired_at IS NOT NULL FROM messages
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![through, limit as i64], |r| {
            Ok((
                r.get::<_, u64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let old: Vec<_> = rows
        .into_iter()
        .take_while(|&(_, sent_at, _)| sent_at < before)
        .collect();
    let Some(&(last, _, _)) = old.last() else {
        return Ok(Vec::new());
    };
    c.prepare_cached("UPDATE retention_mark SET through = ?1 WHERE id = 1")?
        .execute([last])?;
    let ids: Vec<u64> = old
        .into_iter()
        .filter(|&(_, _, removed)| !removed)
        .map(|(id, _, _)| id)
        .collect();
    remove(c, &ids, now)
}

/// Removes each message's content as a recall does, unlinks its files,
/// and marks it removed at `now` (its `expires_at` at `now` at the latest).
fn remove(c: &Connection, ids: &[u64], now: i64) -> Result<Vec<Removed>, StoreError> {
    let mut removed = Vec::with_capacity(ids.len());
    for &id in ids {
        let changed = c
            .prepare_cached(
                "UPDATE messages SET body = '{}', expired_at = ?2,
                     expires_at = MIN(COALESCE(expires_at, ?2), ?2)
                 WHERE id = ?1 AND expired_at IS NULL",
            )?
            .execute(params![id, now])?;
        if changed == 0 {
            continue;
        }
        c.prepare_cached("DELETE FROM message_versions WHERE message_id = ?1")?
            .execute([id])?;
        unindex_text(c, id)?;
        let files = c
            .prepare_cached("DELETE FROM message_files WHERE message_id = ?1 RETURNING file_id")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let row = by_id(c, id)?.ok_or(StoreError::NotFound("message"))?;
        removed.push(Removed { row, files });
    }
    Ok(removed)
}

/// Deletes the rows of those files no message references any more.
pub fn delete_unreferenced_files(
    c: &Connection,
    ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "DELETE FROM files WHERE id = ?1
           AND NOT EXISTS (SELECT 1 FROM message_files mf WHERE mf.file_id = files.id)
         RETURNING id, sha256",
    )?;
    let mut deleted = Vec::new();
    for id in ids {
        if let Some(row) = stmt
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            deleted.push(row);
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::messages::{direct_conversation, history, post_many, search, sync};
    use super::super::{users, Store};
    use super::*;
    use crate::store::messages::NewRow;

    /// Reads compare `expires_at` with their own time, so nothing past it
    /// is read even before a sweep; the sweep then removes each message
    /// once, and retention walks from its mark.
    #[tokio::test]
    async fn reads_filter_by_expiry_before_any_sweep_and_a_sweep_takes_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        let send = |c: &super::super::Conn<'_>, conv, a, id: &str, text: &str, now| {
            let body = serde_json::json!({ "text": text }).to_string();
            let new = NewRow {
                conversation_id: conv,
                sender: a,
                client_msg_id: id,
                body: &body,
                text: Some(text),
                kind: "user",
                now,
                extras: None,
            };
            let posted = post_many(c, &[new], "message.created")?;
            Ok::<_, StoreError>(posted.into_iter().flatten().next().expect("stored").row)
        };
        let (b, conv, kept, gone) = store
            .write_sql(move |c| {
                let a = users::insert(c, "alice", "!", 0)?.id;
                let b = users::insert(c, "bob", "!", 0)?.id;
                let conv = direct_conversation(c, a, b, 0)?;
                let kept = send(c, conv, a, "k", "plum kept", 0)?;
                assert_eq!(kept.expires_at, None);
                set_message_ttl(c, conv, Some(5))?;
                let gone = send(c, conv, a, "g", "plum gone", 1_000)?;
                assert_eq!(gone.expires_at, Some(6_000));
                Ok::<_, StoreError>((b, conv, kept.id, gone.id))
            })
            .await
            .unwrap();
        let found = |now| {
            let store = store.clone();
            async move {
                store
                    .read_sql(move |c| search(c, b, "\"plum\"", 10, now))
                    .await
                    .unwrap()
                    .iter()
                    .map(|m| m.id)
                    .collect::<Vec<u64>>()
            }
        };
        let shown = |now| {
            let store = store.clone();
            async move {
                store
                    .read_sql(move |c| history(c, b, conv, None, 10, now))
                    .await
                    .unwrap()
                    .unwrap_or_default()
                    .iter()
                    .map(|m| m.id)
                    .collect::<Vec<u64>>()
            }
        };
        assert_eq!(found(5_999).await, vec![gone, kept]);
        assert_eq!(shown(5_999).await, vec![kept, gone]);
        // Due, not swept: already unread everywhere (staged text included).
        assert_eq!(found(6_000).await, vec![kept]);
        assert_eq!(shown(6_000).await, vec![kept]);
        let events = store
            .read_sql(move |c| sync(c, b, 0, 10, 6_000))
            .await
            .unwrap();
        assert_eq!(events[0].kind, "message.created");
        assert_eq!(events[1].kind, "message.expired");
        assert_eq!(
            events[1].message.as_ref().map(|m| m.body.as_str()),
            Some("{}")
        );

        let late = store
            .write_sql(move |c| {
                assert!(expire_due(c, 5_999, 10)?.is_empty());
                let swept = expire_due(c, 6_000, 10)?;
                assert_eq!(swept.len(), 1);
                assert_eq!((swept[0].row.id, swept[0].row.body.as_str()), (gone, "{}"));
                assert!(expire_due(c, 9_000, 10)?.is_empty(), "swept once");
                // Retention: up to the first message sent since `before`.
                let a = users::insert(c, "carol", "!", 0)?.id;
                let other = direct_conversation(c, a, b, 0)?;
                let late = send(c, other, a, "l", "plum late", 50_000)?;
                let retired = retire_before(c, 10_000, 20_000, 10)?;
                assert_eq!(
                    retired.iter().map(|r| r.row.id).collect::<Vec<_>>(),
                    vec![kept],
                    "the swept one is not taken twice, the late one stays"
                );
                assert_eq!(retired[0].row.expires_at, Some(20_000));
                assert!(retire_before(c, 10_000, 20_000, 10)?.is_empty());
                Ok::<_, StoreError>(late.id)
            })
            .await
            .unwrap();
        assert_eq!(shown(20_000).await, Vec::<u64>::new());
        assert_eq!(found(20_000).await, vec![late]);
    }
}
