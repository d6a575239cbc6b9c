//! Conversations, messages, inboxes and device cursors.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{users, StoreError};

/// A stored message. `to_user` is the other member of the direct
/// conversation, as seen from the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: u64,
    pub conversation_id: u64,
    pub seq: u64,
    pub sender_id: u64,
    pub to_user: u64,
    pub client_msg_id: String,
    /// The body as JSON text, exactly as accepted.
    pub body: String,
    pub sent_at: i64,
}

/// Columns of [`MessageRow`], for a query joining `messages m` with
/// `conversations c`.
const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.sender_id,
    CASE WHEN m.sender_id = c.user_lo THEN c.user_hi ELSE c.user_lo END,
    m.client_msg_id, m.body, m.sent_at";

fn message(r: &Row<'_>, at: usize) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(at)?,
        conversation_id: r.get(at + 1)?,
        seq: r.get(at + 2)?,
        sender_id: r.get(at + 3)?,
        to_user: r.get(at + 4)?,
        client_msg_id: r.get(at + 5)?,
        body: r.get(at + 6)?,
        sent_at: r.get(at + 7)?,
    })
}

/// One entry of a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub cursor: u64,
    pub kind: String,
    pub message: Option<MessageRow>,
}

/// Result of a send.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// Stored now; `deliveries` are the `(user, inbox cursor)` it was
    /// appended to, recipient first.
    Created {
        message: MessageRow,
        deliveries: Vec<(u64, u64)>,
    },
    /// `(sender, client_msg_id)` was already used: the original message.
    Duplicate(MessageRow),
}

/// Inbox entry kind for a new message.
pub const KIND_MESSAGE_CREATED: &str = "message.created";

pub fn by_client_id(
    c: &Connection,
    sender: u64,
    client_msg_id: &str,
) -> Result<Option<MessageRow>, StoreError> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.sender_id = ?1 AND m.client_msg_id = ?2"
    );
    Ok(c.prepare_cached(&sql)?
        .query_row(params![sender, client_msg_id], |r| message(r, 0))
        .optional()?)
}

/// Stores a direct message and appends it to both inboxes.
pub fn send_direct(
    c: &Connection,
    sender: u64,
    recipient: u64,
    client_msg_id: &str,
    body: &str,
    now: i64,
) -> Result<SendOutcome, StoreError> {
    if let Some(original) = by_client_id(c, sender, client_msg_id)? {
        return Ok(SendOutcome::Duplicate(original));
    }
    if !users::exists(c, recipient)? {
        return Err(StoreError::NotFound("recipient"));
    }
    let (lo, hi) = (sender.min(recipient), sender.max(recipient));
    let existing: Option<(u64, u64)> = c
        .prepare_cached(
            "SELECT id, last_seq FROM conversations WHERE kind = 'direct' AND user_lo = ?1 AND user_hi = ?2",
        )?
        .query_row(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (conversation_id, last_seq) = match existing {
        Some(v) => v,
        None => {
            c.prepare_cached(
                "INSERT INTO conversations (kind, user_lo, user_hi, created_at) VALUES ('direct', ?1, ?2, ?3)",
            )?
            .execute(params![lo, hi, now])?;
            let id = c.last_insert_rowid() as u64;
            let mut member = c.prepare_cached(
                "INSERT OR IGNORE INTO conversation_members (user_id, conversation_id, joined_at) VALUES (?1, ?2, ?3)",
            )?;
            member.execute(params![lo, id, now])?;
            member.execute(params![hi, id, now])?;
            (id, 0)
        }
    };
    let seq = last_seq + 1;
    c.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, body, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        conversation_id,
        seq,
        sender,
        client_msg_id,
        body,
        now
    ])?;
    let id = c.last_insert_rowid() as u64;
    c.prepare_cached("UPDATE conversations SET last_seq = ?2, last_message_id = ?3 WHERE id = ?1")?
        .execute(params![conversation_id, seq, id])?;

    let mut deliveries = Vec::with_capacity(2);
    let mut append = c.prepare_cached(
        "INSERT INTO inbox (user_id, cursor, kind, message_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for user in [recipient, sender] {
        if deliveries.iter().any(|(u, _)| *u == user) {
            continue; // notes to self: one inbox entry
        }
        let cursor = users::next_cursor(c, user)?;
        append.execute(params![user, cursor, KIND_MESSAGE_CREATED, id])?;
        deliveries.push((user, cursor));
    }
    Ok(SendOutcome::Created {
        message: MessageRow {
            id,
            conversation_id,
            seq,
            sender_id: sender,
            to_user: recipient,
            client_msg_id: client_msg_id.to_owned(),
            body: body.to_owned(),
            sent_at: now,
        },
        deliveries,
    })
}

/// The user's inbox after `after`, at most `limit` entries, in cursor order.
pub fn sync(
    c: &Connection,
    user_id: u64,
    after: u64,
    limit: usize,
) -> Result<Vec<InboxRow>, StoreError> {
    let sql = format!(
        "SELECT i.cursor, i.kind, {MESSAGE_COLUMNS}
         FROM inbox i
         LEFT JOIN messages m ON m.id = i.message_id
         LEFT JOIN conversations c ON c.id = m.conversation_id
         WHERE i.user_id = ?1 AND i.cursor > ?2
         ORDER BY i.cursor
         LIMIT ?3"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![user_id, after, limit as i64], |r| {
            let has_message: Option<u64> = r.get(2)?;
            Ok(InboxRow {
                cursor: r.get(0)?,
                kind: r.get(1)?,
                message: match has_message {
                    Some(_) => Some(message(r, 2)?),
                    None => None,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The user's newest inbox cursor.
pub fn inbox_head(c: &Connection, user_id: u64) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("SELECT inbox_cursor FROM users WHERE id = ?1")?
            .query_row([user_id], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

fn is_member(c: &Connection, user_id: u64, conversation_id: u64) -> Result<bool, StoreError> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM conversation_members WHERE user_id = ?1 AND conversation_id = ?2",
    )?
    .exists(params![user_id, conversation_id])?)
}

/// Up to `limit` messages with `seq < before_seq`, oldest first. `None` when
/// the user is not a member (indistinguishable from "no such conversation").
pub fn history(
    c: &Connection,
    user_id: u64,
    conversation_id: u64,
    before_seq: Option<u64>,
    limit: usize,
) -> Result<Option<Vec<MessageRow>>, StoreError> {
    if !is_member(c, user_id, conversation_id)? {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.conversation_id = ?1 AND m.seq < ?2
         ORDER BY m.seq DESC LIMIT ?3"
    );
    let before = before_seq.map_or(i64::MAX, |s| s as i64);
    let mut rows = c
        .prepare_cached(&sql)?
        .query_map(params![conversation_id, before, limit as i64], |r| {
            message(r, 0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.reverse();
    Ok(Some(rows))
}

/// A conversation in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub id: u64,
    pub kind: String,
    /// Direct conversations: the other user (the user itself for notes-to-self).
    pub peer_id: Option<u64>,
    pub last_seq: u64,
    pub last_message: Option<MessageRow>,
}

/// The user's conversations, most recent activity first.
pub fn conversations(
    c: &Connection,
    user_id: u64,
    limit: usize,
) -> Result<Vec<ConversationRow>, StoreError> {
    let sql = format!(
        "SELECT c.id, c.kind, CASE WHEN c.user_lo = ?1 THEN c.user_hi ELSE c.user_lo END, c.last_seq,
                {MESSAGE_COLUMNS}
         FROM conversation_members cm
         JOIN conversations c ON c.id = cm.conversation_id
         LEFT JOIN messages m ON m.id = c.last_message_id
         WHERE cm.user_id = ?1
         ORDER BY c.last_message_id DESC
         LIMIT ?2"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![user_id, limit as i64], |r| {
            let has_last: Option<u64> = r.get(4)?;
            Ok(ConversationRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                peer_id: r.get(2)?,
                last_seq: r.get(3)?,
                last_message: match has_last {
                    Some(_) => Some(message(r, 4)?),
                    None => None,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Records a device's acknowledged cursor; it never moves backwards.
/// Returns the stored value.
pub fn ack(
    c: &Connection,
    user_id: u64,
    device_id: &str,
    cursor: u64,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(c
        .prepare_cached(
            "INSERT INTO device_cursors (user_id, device_id, cursor, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, device_id) DO UPDATE
               SET cursor = MAX(cursor, excluded.cursor), updated_at = excluded.updated_at
             RETURNING cursor",
        )?
        .query_row(params![user_id, device_id, cursor, now], |r| r.get(0))?)
}
