//! PostgreSQL: [`crate::store::messages`].
//!
//! Where SQLite reads the next seq and the next inbox cursor from the
//! newest rows, this backend keeps them in counter columns
//! (`conversations.last_seq`, `users.inbox_cursor`, see the schema) and
//! bumps them in the statement that uses them, in a transaction that holds
//! their rows' locks (`writer.rs`: a group of sends locks its
//! conversations, then their members, in id order, before it runs; any
//! other write holds the cluster-wide write lock alone), so a counter read
//! and bumped there is never handed out twice. Seqs stay gap-free, so "the
//! conversation's last seq" is `last_seq` wherever SQLite says `MAX(seq)`.
//!
//! Statements that read and write at once are data-modifying CTEs: all
//! their parts see the database as it was before the statement, which is
//! what each of them relies on (the body an edit replaces, the previous
//! message of a send).

use tokio_postgres::Row;

pub use super::sends::{post_many, routes};
use super::Session;
use crate::store::messages::{
    ConversationRow, InboxRow, Membership, MessageExtras, MessageRow, MAX_DEVICES_PER_USER,
};
use crate::store::settings::SettingsRow;
use crate::store::StoreError;

/// Columns of [`MessageRow`], for a query joining `messages m` with
/// `conversations c` (a macro, so statements stay `&'static str`s).
/// A reply's quote is read from its target with the reply
/// (`replies::quote!`): a look-up by primary key, only for replies.
macro_rules! message_columns {
    () => {
        concat!(
            "m.id, m.conversation_id, m.seq, m.sender_id,
             CASE WHEN c.kind = 'direct' THEN (CASE WHEN m.sender_id = c.user_lo THEN c.user_hi ELSE c.user_lo END) END,
             c.group_id, m.client_msg_id, m.body, m.sent_at, m.kind, m.edited_at, m.recalled_at, m.expires_at,
             m.reply_to, m.mentions, m.forwarded_from,
             CASE WHEN m.reply_to IS NOT NULL THEN (SELECT ",
            super::replies::quote!(),
            " FROM messages r WHERE r.id = m.reply_to) END"
        )
    };
}
pub(super) use message_columns;

/// How many columns `message_columns!` has: what a query selects after
/// them starts at `at + MESSAGE_WIDTH`.
pub(super) const MESSAGE_WIDTH: usize = 17;

/// An id or a counter read back (`bigint`, never negative).
pub(super) fn uint(r: &Row, at: usize) -> Result<u64, StoreError> {
    Ok(r.try_get::<_, i64>(at)? as u64)
}

pub(super) fn opt_uint(r: &Row, at: usize) -> Result<Option<u64>, StoreError> {
    Ok(r.try_get::<_, Option<i64>>(at)?.map(|v| v as u64))
}

/// A seq, cursor or count from a caller, as a `bigint`: values past
/// `i64::MAX` (which no row holds) compare as the largest.
fn bigint(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn message(r: &Row, at: usize) -> Result<MessageRow, StoreError> {
    Ok(MessageRow {
        id: uint(r, at)?,
        conversation_id: uint(r, at + 1)?,
        seq: uint(r, at + 2)?,
        sender_id: uint(r, at + 3)?,
        to_user: opt_uint(r, at + 4)?,
        to_group: opt_uint(r, at + 5)?,
        client_msg_id: r.try_get(at + 6)?,
        body: r.try_get(at + 7)?,
        sent_at: r.try_get(at + 8)?,
        kind: r.try_get(at + 9)?,
        edited_at: r.try_get(at + 10)?,
        recalled_at: r.try_get(at + 11)?,
        expires_at: r.try_get(at + 12)?,
        extras: MessageExtras::from_columns(
            opt_uint(r, at + 13)?,
            r.try_get(at + 16)?,
            r.try_get(at + 14)?,
            r.try_get(at + 15)?,
        ),
    })
}

fn optional_message(r: &Row, at: usize) -> Result<Option<MessageRow>, StoreError> {
    match opt_uint(r, at)? {
        Some(_) => message(r, at).map(Some),
        None => Ok(None),
    }
}

fn messages(rows: &[Row]) -> Result<Vec<MessageRow>, StoreError> {
    rows.iter().map(|r| message(r, 0)).collect()
}

/// Appends an event to a user's inbox; returns its cursor (an error if
/// there is no such user, as on SQLite).
pub fn append(
    c: &Session<'_>,
    user_id: u64,
    kind: &str,
    message_id: Option<u64>,
    payload: Option<&str>,
) -> Result<u64, StoreError> {
    let row = c.query_one(
        "WITH u AS (
             UPDATE users SET inbox_cursor = inbox_cursor + 1 WHERE id = $1 RETURNING id, inbox_cursor
         )
         INSERT INTO inbox (user_id, cursor, kind, message_id, payload)
         SELECT id, inbox_cursor, $2, $3, $4 FROM u
         RETURNING cursor",
        &[
            &(user_id as i64),
            &kind,
            &message_id.map(|id| id as i64),
            &payload,
        ],
    )?;
    uint(&row, 0)
}

pub fn by_client_id(
    c: &Session<'_>,
    sender: u64,
    client_msg_id: &str,
) -> Result<Option<MessageRow>, StoreError> {
    c.query_opt(
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.sender_id = $1 AND m.client_msg_id = $2"
        ),
        &[&(sender as i64), &client_msg_id],
    )?
    .map(|r| message(&r, 0))
    .transpose()
}

pub fn by_id(c: &Session<'_>, id: u64) -> Result<Option<MessageRow>, StoreError> {
    c.query_opt(
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = $1"
        ),
        &[&(id as i64)],
    )?
    .map(|r| message(&r, 0))
    .transpose()
}

/// The direct conversation of two users, created (with both as members) if
/// needed: the conversation and its members in one statement.
pub fn direct_conversation(c: &Session<'_>, a: u64, b: u64, now: i64) -> Result<u64, StoreError> {
    let (lo, hi) = ((a.min(b)) as i64, (a.max(b)) as i64);
    if let Some(r) = c.query_opt(
        "SELECT id FROM conversations WHERE kind = 'direct' AND user_lo = $1 AND user_hi = $2",
        &[&lo, &hi],
    )? {
        return uint(&r, 0);
    }
    // DISTINCT: notes to self have one member.
    let r = c.query_one(
        "WITH c AS (
             INSERT INTO conversations (kind, user_lo, user_hi, created_at)
             VALUES ('direct', $1, $2, $3) RETURNING id
         ), m AS (
             INSERT INTO conversation_members (user_id, conversation_id, joined_at, role, joined_seq, read_seq)
             SELECT DISTINCT u, c.id, $3, 'member', 0, 0 FROM c, unnest(ARRAY[$1::bigint, $2::bigint]) AS u
         )
         SELECT id FROM c",
        &[&lo, &hi, &now],
    )?;
    uint(&r, 0)
}

/// Adds a member who sees what comes after the conversation's current seq
/// (nothing if they are one already).
pub fn add_member(
    c: &Session<'_>,
    conversation_id: u64,
    user_id: u64,
    role: &str,
    now: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO conversation_members (user_id, conversation_id, joined_at, role, joined_seq, read_seq)
         SELECT $1, c.id, $3, $4, c.last_seq, c.last_seq FROM conversations c WHERE c.id = $2
         ON CONFLICT (user_id, conversation_id) DO NOTHING",
        &[&(user_id as i64), &(conversation_id as i64), &now, &role],
    )?;
    Ok(())
}

/// Removes a member, recording their departure (see [`record_departures`]).
pub fn remove_member(
    c: &Session<'_>,
    conversation_id: u64,
    user_id: u64,
) -> Result<bool, StoreError> {
    record_departures(c, conversation_id, Some(user_id))?;
    Ok(c.execute(
        "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
        &[&(conversation_id as i64), &(user_id as i64)],
    )? > 0)
}

/// Records that `user` (every member, if `None`) is about to stop being a
/// member: they keep the inbox rows of what they saw, and [`sync`] serves
/// them those messages as they were now, whatever edits come later
/// ([`edit`] keeps the body it replaces while a departure needs it).
///
/// `versions_seen` is the newest version id that exists, where SQLite
/// reads the newest ever handed out: the ones between were deleted by a
/// recall, never come back, and every later version gets a higher id, so
/// both pick the same first version after the departure.
pub(crate) fn record_departures(
    c: &Session<'_>,
    conversation_id: u64,
    user: Option<u64>,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO departures (user_id, conversation_id, joined_seq, left_seq, versions_seen)
         SELECT cm.user_id, cm.conversation_id, cm.joined_seq, c.last_seq,
                (SELECT COALESCE(MAX(id), 0) FROM message_versions)
         FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
         WHERE cm.conversation_id = $1 AND ($2::bigint IS NULL OR cm.user_id = $2)
         ON CONFLICT (user_id, conversation_id, left_seq) DO NOTHING",
        &[&(conversation_id as i64), &user.map(|u| u as i64)],
    )?;
    Ok(())
}

pub fn set_role(
    c: &Session<'_>,
    conversation_id: u64,
    user_id: u64,
    role: &str,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE conversation_members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
        &[&(conversation_id as i64), &(user_id as i64), &role],
    )?;
    Ok(())
}

pub fn membership(
    c: &Session<'_>,
    user_id: u64,
    conversation_id: u64,
) -> Result<Option<Membership>, StoreError> {
    c.query_opt(
        "SELECT role, joined_seq, read_seq FROM conversation_members WHERE user_id = $1 AND conversation_id = $2",
        &[&(user_id as i64), &(conversation_id as i64)],
    )?
    .map(|r| {
        Ok(Membership {
            role: r.try_get(0)?,
            joined_seq: uint(&r, 1)?,
            read_seq: uint(&r, 2)?,
        })
    })
    .transpose()
}

/// How many members a conversation has.
pub fn member_count(c: &Session<'_>, conversation_id: u64) -> Result<usize, StoreError> {
    let r = c.query_one(
        "SELECT COUNT(*) FROM conversation_members WHERE conversation_id = $1",
        &[&(conversation_id as i64)],
    )?;
    Ok(uint(&r, 0)? as usize)
}

/// Member ids of a conversation, ascending.
pub fn members(c: &Session<'_>, conversation_id: u64) -> Result<Vec<u64>, StoreError> {
    c.query(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 ORDER BY user_id",
        &[&(conversation_id as i64)],
    )?
    .iter()
    .map(|r| uint(r, 0))
    .collect()
}

/// Members with their roles, owner first, then admins, then by id.
pub fn members_with_roles(
    c: &Session<'_>,
    conversation_id: u64,
) -> Result<Vec<(u64, String)>, StoreError> {
    c.query(
        "SELECT user_id, role FROM conversation_members WHERE conversation_id = $1
         ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, user_id",
        &[&(conversation_id as i64)],
    )?
    .iter()
    .map(|r| Ok((uint(r, 0)?, r.try_get(1)?)))
    .collect()
}

/// Appends `kind` about `message` to the inbox of every member of its
/// conversation; returns the `(user, cursor)` pairs, by user id.
///
/// One statement whatever the conversation's size: each member's cursor
/// is bumped and their inbox row inserted with it (direct conversations
/// too: their two members, one for notes to self, are members for good).
pub fn fan_out(
    c: &Session<'_>,
    message: &MessageRow,
    kind: &str,
) -> Result<Vec<(u64, u64)>, StoreError> {
    c.query(
        "WITH u AS (
             UPDATE users SET inbox_cursor = inbox_cursor + 1
             WHERE id IN (SELECT user_id FROM conversation_members WHERE conversation_id = $1)
             RETURNING id, inbox_cursor
         ), i AS (
             INSERT INTO inbox (user_id, cursor, kind, message_id)
             SELECT id, inbox_cursor, $2, $3 FROM u
             RETURNING user_id, cursor
         )
         SELECT user_id, cursor FROM i ORDER BY user_id",
        &[
            &(message.conversation_id as i64),
            &kind,
            &(message.id as i64),
        ],
    )?
    .iter()
    .map(|r| Ok((uint(r, 0)?, uint(r, 1)?)))
    .collect()
}

/// Replaces a message's body (edit). The body it replaces is kept if
/// someone who left the conversation holds the message (see
/// [`record_departures`]). The full-text column follows the body (it is
/// generated from it).
pub fn edit(c: &Session<'_>, id: u64, body: &str, now: i64) -> Result<(), StoreError> {
    c.execute(
        "WITH kept AS (
             INSERT INTO message_versions (message_id, body, edited_at)
             SELECT m.id, m.body, m.edited_at FROM messages m
             WHERE m.id = $1 AND EXISTS (
                 SELECT 1 FROM departures d
                 WHERE d.conversation_id = m.conversation_id AND d.left_seq >= m.seq AND d.joined_seq < m.seq)
         )
         UPDATE messages SET body = $2, edited_at = $3 WHERE id = $1",
        &[&(id as i64), &body, &now],
    )?;
    Ok(())
}

/// Removes a message's content, earlier versions included, leaving a
/// tombstone (for former members too); its body `{}` has no text to index.
pub fn recall(c: &Session<'_>, id: u64, now: i64) -> Result<(), StoreError> {
    c.execute(
        "WITH versions AS (DELETE FROM message_versions WHERE message_id = $1)
         UPDATE messages SET body = '{}', recalled_at = $2 WHERE id = $1",
        &[&(id as i64), &now],
    )?;
    Ok(())
}

/// Hides a message from one user's history (delete for me).
pub fn hide(c: &Session<'_>, user_id: u64, id: u64) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO hidden_messages (user_id, message_id) VALUES ($1, $2)
         ON CONFLICT (user_id, message_id) DO NOTHING",
        &[&(user_id as i64), &(id as i64)],
    )?;
    Ok(())
}

/// The user's inbox after `after`, at most `limit` entries, in cursor order.
///
/// Messages come in their current state, except to someone who has left
/// their conversation since: a message edited after that comes as it was
/// when they left (the first body an edit after their departure replaced,
/// see [`record_departures`]); a recalled one as a tombstone. The lateral
/// subquery's conditions on `m` alone are checked first, so messages
/// never edited skip the look-ups.
pub fn sync(
    c: &Session<'_>,
    user_id: u64,
    after: u64,
    limit: usize,
    now: i64,
) -> Result<Vec<InboxRow>, StoreError> {
    c.query(
        concat!(
            "SELECT i.cursor, i.kind, i.payload, ",
            message_columns!(),
            ", v.body, v.edited_at
             FROM inbox i
             LEFT JOIN messages m ON m.id = i.message_id
             LEFT JOIN conversations c ON c.id = m.conversation_id
             LEFT JOIN LATERAL (
                 SELECT v2.body, v2.edited_at FROM message_versions v2
                 WHERE m.edited_at IS NOT NULL AND m.recalled_at IS NULL
                   AND v2.message_id = m.id AND v2.id > (
                     SELECT MIN(d.versions_seen) FROM departures d
                     WHERE d.user_id = $1 AND d.conversation_id = m.conversation_id
                       AND d.left_seq >= m.seq AND d.joined_seq < m.seq)
                 ORDER BY v2.id LIMIT 1
             ) v ON true
             WHERE i.user_id = $1 AND i.cursor > $2
             ORDER BY i.cursor
             LIMIT $3"
        ),
        &[&(user_id as i64), &bigint(after), &(limit as i64)],
    )?
    .iter()
    .map(|r| {
        let mut message = optional_message(r, 3)?;
        let seen: Option<String> = r.try_get(3 + MESSAGE_WIDTH)?;
        if let (Some(m), Some(body)) = (message.as_mut(), seen) {
            m.body = body;
            m.edited_at = r.try_get(4 + MESSAGE_WIDTH)?;
        }
        Ok(InboxRow {
            cursor: uint(r, 0)?,
            kind: r.try_get(1)?,
            payload: r.try_get(2)?,
            message,
        }
        .as_of(now))
    })
    .collect()
}

/// The user's newest inbox cursor (0 for an empty inbox or no such user).
pub fn inbox_head(c: &Session<'_>, user_id: u64) -> Result<u64, StoreError> {
    let r = c.query_one(
        "SELECT COALESCE(MAX(cursor), 0) FROM inbox WHERE user_id = $1",
        &[&(user_id as i64)],
    )?;
    uint(&r, 0)
}

/// Up to `limit` messages with `seq < before_seq`, oldest first, that the
/// user may see: after they joined, not hidden by them. `None` when the
/// user is not a member (indistinguishable from "no such conversation").
pub fn history(
    c: &Session<'_>,
    user_id: u64,
    conversation_id: u64,
    before_seq: Option<u64>,
    limit: usize,
    now: i64,
) -> Result<Option<Vec<MessageRow>>, StoreError> {
    let Some(member) = membership(c, user_id, conversation_id)? else {
        return Ok(None);
    };
    let before = before_seq.map_or(i64::MAX, bigint);
    let rows = c.query(
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.conversation_id = $1 AND m.seq < $2 AND m.seq > $4
               AND (m.expires_at IS NULL OR m.expires_at > $6)
               AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $5 AND h.message_id = m.id)
             ORDER BY m.seq DESC LIMIT $3"
        ),
        &[
            &(conversation_id as i64),
            &before,
            &(limit as i64),
            &bigint(member.joined_seq),
            &(user_id as i64),
            &now,
        ],
    )?;
    let mut rows = messages(&rows)?;
    rows.reverse();
    Ok(Some(rows))
}

/// The user's conversations, pinned first, then most recent activity
/// first, with unread counts (others' user messages after the read marker),
/// of those the ones that mention the user (counted when read, as on
/// SQLite), and settings; archived ones only if `archived`, else none.
pub fn conversations(
    c: &Session<'_>,
    user_id: u64,
    archived: bool,
    limit: usize,
) -> Result<Vec<ConversationRow>, StoreError> {
    c.query(
        concat!(
            "SELECT c.id, c.kind, CASE WHEN c.kind = 'direct' THEN (CASE WHEN c.user_lo = $1 THEN c.user_hi ELSE c.user_lo END) END,
                    c.group_id, g.name, c.last_seq, mine.read_seq, c.message_ttl_seconds,
                    (SELECT COUNT(*) FROM messages u WHERE u.conversation_id = c.id AND u.seq > mine.read_seq
                        AND u.sender_id <> $1 AND u.kind = 'user' AND u.recalled_at IS NULL AND u.expired_at IS NULL
                        AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.message_id = u.id)),
                    (SELECT COUNT(*) FROM messages u WHERE u.conversation_id = c.id AND u.seq > mine.read_seq
                        AND u.mentions IS NOT NULL AND u.sender_id <> $1 AND u.recalled_at IS NULL AND u.expired_at IS NULL
                        AND (u.mentions = '\"all\"' OR u.mentions::jsonb @> jsonb_build_array($1::bigint))
                        AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.message_id = u.id)),
                    ",
            message_columns!(),
            ", s.muted_until, s.pinned_at
             FROM conversation_members mine
             JOIN conversations c ON c.id = mine.conversation_id
             LEFT JOIN messages last ON last.conversation_id = c.id AND last.seq = c.last_seq
             LEFT JOIN groups g ON g.id = c.group_id
             LEFT JOIN messages m ON m.id = last.id AND m.seq > mine.joined_seq
             LEFT JOIN conversation_settings s ON s.user_id = $1 AND s.conversation_id = c.id
             WHERE mine.user_id = $1 AND COALESCE(s.archived_seq >= c.last_seq, false) = $3
             ORDER BY s.pinned_at IS NOT NULL DESC, COALESCE(last.id, 0) DESC, c.id DESC
             LIMIT $2"
        ),
        &[&(user_id as i64), &(limit as i64), &archived],
    )?
    .iter()
    .map(|r| {
        Ok(ConversationRow {
            id: uint(r, 0)?,
            kind: r.try_get(1)?,
            peer_id: opt_uint(r, 2)?,
            group_id: opt_uint(r, 3)?,
            group_name: r.try_get(4)?,
            last_seq: uint(r, 5)?,
            read_seq: uint(r, 6)?,
            message_ttl_seconds: opt_uint(r, 7)?,
            unread: uint(r, 8)?,
            mentions: uint(r, 9)?,
            last_message: optional_message(r, 10)?,
            settings: SettingsRow {
                muted_until: r.try_get(10 + MESSAGE_WIDTH)?,
                pinned_at: r.try_get(11 + MESSAGE_WIDTH)?,
                archived,
            },
        })
    })
    .collect()
}

/// Moves the read marker forward (never back, never past the last seq).
/// Returns `(old, new)`; equal when nothing moved. One statement: the
/// marker is read and moved from the same snapshot.
pub fn mark_read(
    c: &Session<'_>,
    user_id: u64,
    conversation_id: u64,
    seq: u64,
) -> Result<(u64, u64), StoreError> {
    let r = c
        .query_opt(
            "WITH cur AS (
                 SELECT cm.read_seq AS old, GREATEST(LEAST($3, c.last_seq), cm.read_seq) AS new
                 FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
                 WHERE cm.user_id = $1 AND cm.conversation_id = $2
             ), moved AS (
                 UPDATE conversation_members cm SET read_seq = cur.new FROM cur
                 WHERE cm.user_id = $1 AND cm.conversation_id = $2 AND cur.new > cur.old
             )
             SELECT old, new FROM cur",
            &[&(user_id as i64), &(conversation_id as i64), &bigint(seq)],
        )?
        .ok_or(StoreError::NotFound("conversation"))?;
    Ok((uint(&r, 0)?, uint(&r, 1)?))
}

/// Distinct senders (other than `reader`) of user messages with seq in
/// `(from, to]`, ascending.
pub fn senders_between(
    c: &Session<'_>,
    conversation_id: u64,
    reader: u64,
    from: u64,
    to: u64,
) -> Result<Vec<u64>, StoreError> {
    c.query(
        "SELECT DISTINCT sender_id FROM messages
         WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 AND sender_id <> $4 AND kind = 'user'
         ORDER BY sender_id",
        &[
            &(conversation_id as i64),
            &bigint(from),
            &bigint(to),
            &(reader as i64),
        ],
    )?
    .iter()
    .map(|r| uint(r, 0))
    .collect()
}

/// Records a device's acknowledged cursor; it never moves backwards.
/// Returns `(previous, stored)`: the user's highest cursor over all devices
/// before (read in the same snapshot as the upsert), and this device's now.
pub fn ack(
    c: &Session<'_>,
    user_id: u64,
    device_id: &str,
    cursor: u64,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let user = user_id as i64;
    let r = c.query_one(
        "WITH stored AS (
             INSERT INTO device_cursors (user_id, device_id, cursor, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, device_id) DO UPDATE
               SET cursor = GREATEST(device_cursors.cursor, excluded.cursor), updated_at = excluded.updated_at
             RETURNING cursor
         )
         SELECT (SELECT COALESCE(MAX(cursor), 0) FROM device_cursors WHERE user_id = $1), cursor FROM stored",
        &[&user, &device_id, &bigint(cursor), &now],
    )?;
    // A device that is never seen again (a reinstall, a browser tab) would
    // keep its row forever: past the cap, the least recently acked go.
    // A statement of its own: it must see the row just stored.
    c.execute(
        "DELETE FROM device_cursors WHERE user_id = $1 AND device_id NOT IN
           (SELECT device_id FROM device_cursors WHERE user_id = $1
            ORDER BY updated_at DESC, device_id = $2 DESC LIMIT $3)",
        &[&user, &device_id, &(MAX_DEVICES_PER_USER as i64)],
    )?;
    Ok((uint(&r, 0)?, uint(&r, 1)?))
}

/// Message events in the user's inbox with cursor in `(from, to]`: for
/// delivery receipts, the newest seq per (conversation, sender), in that
/// order.
pub fn delivered_between(
    c: &Session<'_>,
    user_id: u64,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, u64, u64)>, StoreError> {
    c.query(
        "SELECT m.conversation_id, m.sender_id, MAX(m.seq) FROM inbox i JOIN messages m ON m.id = i.message_id
         WHERE i.user_id = $1 AND i.cursor > $2 AND i.cursor <= $3 AND i.kind = 'message.created'
           AND m.sender_id <> $1 AND m.kind = 'user'
         GROUP BY m.conversation_id, m.sender_id
         ORDER BY m.conversation_id, m.sender_id",
        &[&(user_id as i64), &bigint(from), &bigint(to)],
    )?
    .iter()
    .map(|r| Ok((uint(r, 0)?, uint(r, 1)?, uint(r, 2)?)))
    .collect()
}

/// Full-text search over what the user can see: conversations they are in
/// (after joining), not recalled, not hidden by them, not from users they
/// block, not expired at `now` (swept or not); newest first.
///
/// `query` is the FTS5 expression the domain builds (every word quoted,
/// the last one a prefix, see [`tsquery`]); it becomes a `tsquery` over
/// the generated `text_tsv` column, so every committed message is found
/// (there is nothing to stage or catch up).
pub fn search(
    c: &Session<'_>,
    user_id: u64,
    query: &str,
    limit: usize,
    now: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    let rows = c.query(
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m
             JOIN conversations c ON c.id = m.conversation_id
             JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id = $1
             WHERE m.text_tsv @@ to_tsquery('simple', $2)
               AND m.seq > cm.joined_seq
               AND m.recalled_at IS NULL
               AND (m.expires_at IS NULL OR m.expires_at > $4)
               AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.message_id = m.id)
               AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = $1 AND b.blocked_id = m.sender_id)
             ORDER BY m.id DESC
             LIMIT $3"
        ),
        &[&(user_id as i64), &tsquery(query), &(limit as i64), &now],
    )?;
    messages(&rows)
}

/// The `to_tsquery` text for an FTS5 expression of quoted words (`"a"
/// "b""c"*`): each word becomes a quoted operand (so nothing in it is an
/// operator), all required (`&`), a trailing `*` a prefix (`:*`). Like
/// FTS5 with a quoted string, `to_tsquery` splits an operand into the
/// configuration's tokens and requires them as a phrase. Anything outside
/// quotes is taken as words too, so no input is an error.
fn tsquery(expr: &str) -> String {
    let mut words: Vec<(String, bool)> = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' => {
                let mut word = String::new();
                while let Some(ch) = chars.next() {
                    if ch == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    word.push(ch);
                }
                words.push((word, false));
            }
            '*' => {
                if let Some(last) = words.last_mut() {
                    last.1 = true;
                }
            }
            ch if ch.is_whitespace() => {}
            ch => {
                let mut word = String::from(ch);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || next == '"' || next == '*' {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                words.push((word, false));
            }
        }
    }
    words
        .iter()
        .map(|(word, prefix)| {
            // Inside a quoted tsquery operand, `'` is written `''` and a
            // backslash escapes the next character.
            let quoted = word.replace('\\', "\\\\").replace('\'', "''");
            format!("'{quoted}'{}", if *prefix { ":*" } else { "" })
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// Others' unread user messages in one conversation for `user` (as in the
/// conversation list).
pub fn unread(c: &Session<'_>, user_id: u64, conversation_id: u64) -> Result<u64, StoreError> {
    let r = c.query_one(
        "SELECT COUNT(*) FROM messages u JOIN conversation_members cm
           ON cm.conversation_id = u.conversation_id AND cm.user_id = $1
         WHERE u.conversation_id = $2 AND u.seq > cm.read_seq AND u.sender_id <> $1
           AND u.kind = 'user' AND u.recalled_at IS NULL AND u.expired_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.message_id = u.id)",
        &[&(user_id as i64), &(conversation_id as i64)],
    )?;
    uint(&r, 0)
}

#[cfg(test)]
mod tests {
    use super::tsquery;

    /// What the domain's FTS5 expressions become.
    #[test]
    fn fts5_expressions_become_quoted_tsquery_operands() {
        assert_eq!(tsquery("\"hello\" \"world\"*"), "'hello' & 'world':*");
        assert_eq!(
            tsquery("\"a\"\"b\" \"OR\"*"),
            "'a\"b' & 'OR':*",
            "a doubled quote is one, operators are words"
        );
        assert_eq!(tsquery("\"it's\" \"a\\b\"*"), "'it''s' & 'a\\\\b':*");
        assert_eq!(tsquery("\"NEAR(\"*"), "'NEAR(':*");
        assert_eq!(tsquery("bare words*"), "'bare' & 'words':*");
        assert_eq!(tsquery(""), "");
    }
}
