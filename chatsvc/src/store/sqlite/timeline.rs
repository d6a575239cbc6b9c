//! SQLite: what a user reads back (sync, history, the conversation list,
//! read markers, device receipts, unread counts), for
//! [`crate::store::messages`].

use rusqlite::{params, Connection, OptionalExtension};

use super::conversations::membership;
use super::messages::{message, optional_message, MESSAGE_COLUMNS, MESSAGE_WIDTH};
use crate::store::messages::{ConversationRow, InboxRow, MessageRow, MAX_DEVICES_PER_USER};
use crate::store::settings::SettingsRow;
use crate::store::StoreError;

/// The user's inbox after `after`, at most `limit` entries, in cursor order.
///
/// Messages come in their current state, except to someone who has left
/// their conversation since: a message edited after that comes as it was
/// when they left (the first body an edit after their departure replaced,
/// see [`record_departures`]); a recalled one as a tombstone. Messages
/// never edited skip those look-ups (the `CASE`; a plain `AND` in the
/// join did not spare them).
pub fn sync(
    c: &Connection,
    user_id: u64,
    after: u64,
    limit: usize,
    now: i64,
) -> Result<Vec<InboxRow>, StoreError> {
    let sql = format!(
        "SELECT i.cursor, i.kind, i.payload, {MESSAGE_COLUMNS}, v.body, v.edited_at
         FROM inbox i
         LEFT JOIN messages m ON m.id = i.message_id
         LEFT JOIN conversations c ON c.id = m.conversation_id
         LEFT JOIN message_versions v ON v.id = CASE WHEN m.edited_at IS NOT NULL THEN (
             SELECT v2.id FROM message_versions v2
             WHERE v2.message_id = m.id AND m.recalled_at IS NULL AND v2.id > (
                 SELECT MIN(d.versions_seen) FROM departures d
                 WHERE d.user_id = ?1 AND d.conversation_id = m.conversation_id
                   AND d.left_seq >= m.seq AND d.joined_seq < m.seq)
             ORDER BY v2.id LIMIT 1) END
         WHERE i.user_id = ?1 AND i.cursor > ?2
         ORDER BY i.cursor
         LIMIT ?3"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![user_id, after, limit as i64], |r| {
            let mut message = optional_message(r, 3)?;
            let seen: Option<String> = r.get(3 + MESSAGE_WIDTH)?;
            if let (Some(m), Some(body)) = (message.as_mut(), seen) {
                m.body = body;
                m.edited_at = r.get(4 + MESSAGE_WIDTH)?;
            }
            Ok(InboxRow {
                cursor: r.get(0)?,
                kind: r.get(1)?,
                payload: r.get(2)?,
                message,
            }
            .as_of(now))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The user's newest inbox cursor.
pub fn inbox_head(c: &Connection, user_id: u64) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("SELECT COALESCE(MAX(cursor), 0) FROM inbox WHERE user_id = ?1")?
            .query_row([user_id], |r| r.get(0))?,
    )
}

/// Up to `limit` messages with `seq < before_seq`, oldest first, that the
/// user may see: after they joined, not hidden by them. `None` when the
/// user is not a member (indistinguishable from "no such conversation").
pub fn history(
    c: &Connection,
    user_id: u64,
    conversation_id: u64,
    before_seq: Option<u64>,
    limit: usize,
    now: i64,
) -> Result<Option<Vec<MessageRow>>, StoreError> {
    let Some(member) = membership(c, user_id, conversation_id)? else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.conversation_id = ?1 AND m.seq < ?2 AND m.seq > ?4
           AND (m.expires_at IS NULL OR m.expires_at > ?6)
           AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ?5 AND h.message_id = m.id)
         ORDER BY m.seq DESC LIMIT ?3"
    );
    let before = before_seq.map_or(i64::MAX, |s| i64::try_from(s).unwrap_or(i64::MAX));
    let mut rows = c
        .prepare_cached(&sql)?
        .query_map(
            params![
                conversation_id,
                before,
                limit as i64,
                member.joined_seq,
                user_id,
                now
            ],
            |r| message(r, 0),
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.reverse();
    Ok(Some(rows))
}

/// The user's conversations, pinned first, then most recent activity
/// first, with unread counts (others' user messages after the read marker),
/// of those the ones that mention the user (counted when read, from the
/// messages themselves, so a read marker moved on any device, a recall or a
/// restart leaves nothing to correct), and settings; archived ones only if
/// `archived`, else none.
pub fn conversations(
    c: &Connection,
    user_id: u64,
    archived: bool,
    limit: usize,
) -> Result<Vec<ConversationRow>, StoreError> {
    let sql = format!(
        "WITH mine AS (
             SELECT cm.conversation_id, cm.read_seq, cm.joined_seq,
                    (SELECT MAX(x.seq) FROM messages x WHERE x.conversation_id = cm.conversation_id) AS last_seq
             FROM conversation_members cm WHERE cm.user_id = ?1
         )
         SELECT c.id, c.kind, CASE WHEN c.kind = 'direct' THEN (CASE WHEN c.user_lo = ?1 THEN c.user_hi ELSE c.user_lo END) END,
                c.group_id, g.name, COALESCE(mine.last_seq, 0), mine.read_seq, c.message_ttl_seconds,
                (SELECT COUNT(*) FROM messages u WHERE u.conversation_id = c.id AND u.seq > mine.read_seq
                    AND u.sender_id != ?1 AND u.kind = 'user' AND u.recalled_at IS NULL AND u.expired_at IS NULL
                    AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ?1 AND h.message_id = u.id)),
                (SELECT COUNT(*) FROM messages u WHERE u.conversation_id = c.id AND u.seq > mine.read_seq
                    AND u.mentions IS NOT NULL AND u.sender_id != ?1 AND u.recalled_at IS NULL AND u.expired_at IS NULL
                    AND (u.mentions = '\"all\"' OR EXISTS (SELECT 1 FROM json_each(u.mentions) j WHERE j.value = ?1))
                    AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ?1 AND h.message_id = u.id)),
                {MESSAGE_COLUMNS},
                s.muted_until, s.pinned_at
         FROM mine
         JOIN conversations c ON c.id = mine.conversation_id
         LEFT JOIN messages last ON last.conversation_id = c.id AND last.seq = mine.last_seq
         LEFT JOIN groups g ON g.id = c.group_id
         LEFT JOIN messages m ON m.id = last.id AND m.seq > mine.joined_seq
         LEFT JOIN conversation_settings s ON s.user_id = ?1 AND s.conversation_id = c.id
         WHERE COALESCE(s.archived_seq >= COALESCE(mine.last_seq, 0), 0) = ?3
         ORDER BY s.pinned_at IS NOT NULL DESC, COALESCE(last.id, 0) DESC, c.id DESC
         LIMIT ?2"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![user_id, limit as i64, archived], |r| {
            Ok(ConversationRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                peer_id: r.get(2)?,
                group_id: r.get(3)?,
                group_name: r.get(4)?,
                last_seq: r.get(5)?,
                read_seq: r.get(6)?,
                message_ttl_seconds: r.get(7)?,
                unread: r.get(8)?,
                mentions: r.get(9)?,
                last_message: optional_message(r, 10)?,
                settings: SettingsRow {
                    muted_until: r.get(10 + MESSAGE_WIDTH)?,
                    pinned_at: r.get(11 + MESSAGE_WIDTH)?,
                    archived,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Moves the read marker forward (never back, never past the last seq).
/// Returns `(old, new)`; equal when nothing moved.
pub fn mark_read(
    c: &Connection,
    user_id: u64,
    conversation_id: u64,
    seq: u64,
) -> Result<(u64, u64), StoreError> {
    let (old, last): (u64, u64) = c
        .prepare_cached(
            "SELECT cm.read_seq, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?2)
             FROM conversation_members cm WHERE cm.user_id = ?1 AND cm.conversation_id = ?2",
        )?
        .query_row(params![user_id, conversation_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or(StoreError::NotFound("conversation"))?;
    let new = seq.min(last).max(old);
    if new > old {
        c.prepare_cached("UPDATE conversation_members SET read_seq = ?3 WHERE user_id = ?1 AND conversation_id = ?2")?
            .execute(params![user_id, conversation_id, new])?;
    }
    Ok((old, new))
}

/// Distinct senders (other than `reader`) of user messages with seq in
/// `(from, to]`.
pub fn senders_between(
    c: &Connection,
    conversation_id: u64,
    reader: u64,
    from: u64,
    to: u64,
) -> Result<Vec<u64>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT sender_id FROM messages
         WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3 AND sender_id != ?4 AND kind = 'user'",
    )?;
    let ids = stmt
        .query_map(params![conversation_id, from, to, reader], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(ids)
}

pub fn ack(
    c: &Connection,
    user_id: u64,
    device_id: &str,
    cursor: u64,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let previous: u64 = c
        .prepare_cached("SELECT COALESCE(MAX(cursor), 0) FROM device_cursors WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?;
    let stored = c
        .prepare_cached(
            "INSERT INTO device_cursors (user_id, device_id, cursor, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, device_id) DO UPDATE
               SET cursor = MAX(cursor, excluded.cursor), updated_at = excluded.updated_at
             RETURNING cursor",
        )?
        .query_row(params![user_id, device_id, cursor, now], |r| r.get(0))?;
    // A device that is never seen again (a reinstall, a browser tab) would
    // keep its row forever: past the cap, the least recently acked go.
    c.prepare_cached(
        "DELETE FROM device_cursors WHERE user_id = ?1 AND device_id NOT IN
           (SELECT device_id FROM device_cursors WHERE user_id = ?1
            ORDER BY updated_at DESC, device_id = ?2 DESC LIMIT ?3)",
    )?
    .execute(params![user_id, device_id, MAX_DEVICES_PER_USER])?;
    Ok((previous, stored))
}

/// Message events in the user's inbox with cursor in `(from, to]`: for
/// delivery receipts, the newest seq per (conversation, sender).
pub fn delivered_between(
    c: &Connection,
    user_id: u64,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, u64, u64)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT m.conversation_id, m.sender_id, MAX(m.seq) FROM inbox i JOIN messages m ON m.id = i.message_id
         WHERE i.user_id = ?1 AND i.cursor > ?2 AND i.cursor <= ?3 AND i.kind = 'message.created'
           AND m.sender_id != ?1 AND m.kind = 'user'
         GROUP BY m.conversation_id, m.sender_id",
    )?;
    let rows = stmt
        .query_map(params![user_id, from, to], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Others' unread user messages in one conversation for `user` (as in the
/// conversation list).
pub fn unread(c: &Connection, user_id: u64, conversation_id: u64) -> Result<u64, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT COUNT(*) FROM messages u JOIN conversation_members cm
               ON cm.conversation_id = u.conversation_id AND cm.user_id = ?1
             WHERE u.conversation_id = ?2 AND u.seq > cm.read_seq AND u.sender_id != ?1
               AND u.kind = 'user' AND u.recalled_at IS NULL AND u.expired_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ?1 AND h.message_id = u.id)",
        )?
        .query_row(params![user_id, conversation_id], |r| r.get(0))?)
}
