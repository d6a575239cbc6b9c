//! SQLite: [`crate::store::messages`]: the rows, sends and their
//! fan-out, edits, recalls. Conversations and members are in
//! `conversations.rs`, what users read back in `timeline.rs`; both are
//! re-exported here, where the operations dispatch.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::conn::{Conn, Hot};
use crate::store::messages::{MessageExtras, MessageRow, NewRow, Posted};

pub(super) use super::conversations::record_departures;
pub use super::conversations::{
    add_member, direct_conversation, member_count, members, members_with_roles, membership,
    remove_member, routes, set_role,
};
pub use super::fulltext::search;
pub use super::timeline::{
    ack, conversations, delivered_between, history, inbox_head, mark_read, senders_between, sync,
    unread,
};

use super::fulltext::{index_staged_text, text_of, unindex_text};

use super::users;
use crate::store::StoreError;

/// Columns of [`MessageRow`], for a query joining `messages m` with
/// `conversations c`; [`MESSAGE_WIDTH`] of them. A reply's quote is read
/// from its target here, with the reply (`replies::QUOTE`): a look-up by
/// primary key, only for replies.
pub(super) const MESSAGE_COLUMNS: &str = concat!(
    "m.id, m.conversation_id, m.seq, m.sender_id,
    CASE WHEN c.kind = 'direct' THEN (CASE WHEN m.sender_id = c.user_lo THEN c.user_hi ELSE c.user_lo END) END,
    c.group_id, m.client_msg_id, m.body, m.sent_at, m.kind, m.edited_at, m.recalled_at, m.expires_at,
    m.reply_to, m.mentions, m.forwarded_from,
    CASE WHEN m.reply_to IS NOT NULL THEN (SELECT ",
    super::replies::quote!(),
    " FROM messages r WHERE r.id = m.reply_to) END"
);

/// How many columns [`MESSAGE_COLUMNS`] has: what a query selects after
/// them starts at `at + MESSAGE_WIDTH`.
pub(super) const MESSAGE_WIDTH: usize = 17;

pub(super) fn message(r: &Row<'_>, at: usize) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(at)?,
        conversation_id: r.get(at + 1)?,
        seq: r.get(at + 2)?,
        sender_id: r.get(at + 3)?,
        to_user: r.get(at + 4)?,
        to_group: r.get(at + 5)?,
        client_msg_id: r.get(at + 6)?,
        body: r.get(at + 7)?,
        sent_at: r.get(at + 8)?,
        kind: r.get(at + 9)?,
        edited_at: r.get(at + 10)?,
        recalled_at: r.get(at + 11)?,
        expires_at: r.get(at + 12)?,
        extras: MessageExtras::from_columns(
            r.get(at + 13)?,
            r.get(at + 16)?,
            r.get(at + 14)?,
            r.get(at + 15)?,
        ),
    })
}

pub(super) fn optional_message(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<MessageRow>> {
    let id: Option<u64> = r.get(at)?;
    id.map(|_| message(r, at)).transpose()
}

/// Appends an event to a user's inbox; returns its cursor.
pub fn append(
    c: &Connection,
    user_id: u64,
    kind: &str,
    message_id: Option<u64>,
    payload: Option<&str>,
) -> Result<u64, StoreError> {
    let cursor = users::next_cursor(c, user_id)?;
    c.prepare_cached("INSERT INTO inbox (user_id, cursor, kind, message_id, payload) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![user_id, cursor, kind, message_id, payload])?;
    Ok(cursor)
}

pub fn by_client_id(
    c: &Conn<'_>,
    sender: u64,
    client_msg_id: &str,
) -> Result<Option<MessageRow>, StoreError> {
    // Every send asks, and nearly always finds nothing: the unique index
    // answers alone, without the row and its conversation.
    let id: Option<u64> = c
        .hot(Hot::ByClientId)?
        .query_row(params![sender, client_msg_id], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => by_id(c, id),
        None => Ok(None),
    }
}

pub(super) const BY_CLIENT_ID: &str =
    "SELECT id FROM messages WHERE sender_id = ?1 AND client_msg_id = ?2";

pub fn by_id(c: &Connection, id: u64) -> Result<Option<MessageRow>, StoreError> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = ?1"
    );
    Ok(c.prepare_cached(&sql)?
        .query_row([id], |r| message(r, 0))
        .optional()?)
}

/// Stores each message ([`insert`]) and appends it to its members'
/// inboxes ([`fan_out`]), one after another.
pub fn post_many(
    c: &Conn<'_>,
    rows: &[NewRow<'_>],
    kind: &str,
) -> Result<Vec<Option<Posted>>, StoreError> {
    rows.iter()
        .map(|new| {
            let Some(row) = insert(c, new)? else {
                return Ok(None);
            };
            let deliveries = fan_out(c, &row, kind)?;
            Ok(Some(Posted { row, deliveries }))
        })
        .collect()
}

/// Stores a message as the conversation's next seq, unless the sender
/// already sent one with this `client_msg_id`: then it writes nothing and
/// returns `None`: the insert's own probe of that unique index tells.
///
/// The sender's read marker
/// moves to it when others' messages were unread: writing in a conversation
/// means having read it.
///
/// The marker is only written when that changes a count. Unread counts
/// never include one's own messages, so passing them changes nothing; and
/// after each of the sender's messages nothing of others' is unread up to
/// it. So others' messages can be unread only if the message just before
/// this one is someone else's (and past the marker); the conversation's
/// newest message, read here for the next seq anyway, says who sent it.
/// The write this saves would dirty a page of its own in every commit.
pub(super) fn insert(c: &Conn<'_>, new: &NewRow<'_>) -> Result<Option<MessageRow>, StoreError> {
    let NewRow {
        conversation_id,
        sender,
        client_msg_id,
        body,
        text,
        kind,
        now,
        extras,
    } = *new;
    // The conversation's last seq and sender come from its newest message
    // (read through the `(conversation_id, seq)` index the INSERT descends
    // anyway), not from copies in `conversations`: updating those dirtied a
    // page per message that no other message of the group commit shared.
    let (seq, to_user, to_group, previous_sender, ttl): (
        u64,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<i64>,
    ) = c
        .hot(Hot::LastMessage)?
        .query_row(params![conversation_id, sender], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
    // Only people's messages disappear; a group's system messages are its
    // record of who was in it.
    let expires_at = ttl
        .filter(|_| kind == "user")
        .map(|ttl| now.saturating_add(ttl.saturating_mul(1000)));
    // A plain send keeps its held statement; replies, mentions and
    // forwards name their columns too.
    let row = params![
        conversation_id,
        seq,
        sender,
        client_msg_id,
        body,
        now,
        kind,
        expires_at
    ];
    let inserted = match extras {
        None => c.hot(Hot::InsertMessage)?.execute(row)?,
        Some(x) => {
            let extra = params![x.reply_to, x.mentions, x.forwarded_from];
            let all: Vec<&dyn rusqlite::ToSql> = row.iter().chain(extra).copied().collect();
            c.hot(Hot::InsertMessageWithExtras)?
                .execute(all.as_slice())?
        }
    };
    if inserted == 0 {
        return Ok(None);
    }
    let id = c.last_insert_rowid() as u64;
    if previous_sender.is_some_and(|p| p != sender) {
        c.hot(Hot::PassReadMarker)?
            .execute(params![conversation_id, sender, seq])?;
    }
    if let Some(text) = text {
        c.hot(Hot::StageText)?.execute(params![id, text])?;
    }
    Ok(Some(MessageRow {
        id,
        conversation_id,
        seq,
        sender_id: sender,
        to_user,
        to_group,
        client_msg_id: client_msg_id.to_owned(),
        body: body.to_owned(),
        sent_at: now,
        kind: kind.to_owned(),
        edited_at: None,
        recalled_at: None,
        expires_at,
        extras: extras.map(|x| Box::new(x.clone())),
    }))
}

/// The conversation (`?1`) and its newest message, for [`insert`]: the next
/// seq, the other member as seen from the sender (`?2`) of a direct
/// conversation, the group, the newest message's sender, and the
/// conversation's message TTL. The ORDER BY
/// and LIMIT on the join itself let SQLite walk the `(conversation_id, seq)`
/// index backwards from its end; a `LEFT JOIN (SELECT ... LIMIT 1)` made it
/// materialize that subquery into a temporary table on every send.
pub(super) const LAST_MESSAGE: &str = "SELECT COALESCE(m.seq, 0) + 1,
         CASE WHEN c.kind = 'direct' THEN (CASE WHEN ?2 = c.user_lo THEN c.user_hi ELSE c.user_lo END) END,
         c.group_id, m.sender_id, c.message_ttl_seconds
     FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
     WHERE c.id = ?1
     ORDER BY m.seq DESC LIMIT 1";

pub(super) const INSERT_MESSAGE: &str =
    "INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, body, sent_at, kind, expires_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (sender_id, client_msg_id) DO NOTHING";

pub(super) const INSERT_MESSAGE_WITH_EXTRAS: &str = "INSERT INTO messages
     (conversation_id, seq, sender_id, client_msg_id, body, sent_at, kind, expires_at,
      reply_to, mentions, forwarded_from)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (sender_id, client_msg_id) DO NOTHING";

/// Moves the sender's read marker up to just before their message `?3`
/// (see [`insert`]).
pub(super) const PASS_READ_MARKER: &str = "UPDATE conversation_members SET read_seq = ?3
     WHERE conversation_id = ?1 AND user_id = ?2 AND read_seq < ?3 - 1";

/// Conversations up to this size get their inbox rows one member at a time.
const FAN_OUT_ONE_BY_ONE: usize = 16;

const _: () = assert!(FAN_OUT_ONE_BY_ONE + 1 == 17, "fan_out's LIMIT");

/// Appends `kind` about `message` to the inbox of every member of its
/// conversation; returns the `(user, cursor)` pairs, by user id.
///
/// A user's next cursor is one past the last in their inbox (rows are never
/// deleted): the inbox's own primary key gives it, on the page the new row
/// goes to, so no per-user counter is written elsewhere (it cost two
/// statements and a page of `users` per direct message).
///
/// Direct conversations: their two members (one for notes to self) are in
/// the message row already, as their membership never changes; one
/// statement reads both cursors. Small groups: one-row statements per
/// member. Larger groups: one INSERT ... SELECT ... RETURNING whatever the
/// size; it needs a temporary table for the member list and a statement
/// journal, which cost more than a few one-row statements.
pub fn fan_out(
    c: &Conn<'_>,
    message: &MessageRow,
    kind: &str,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let message_id = message.id;
    let conversation_id = message.conversation_id;
    if let Some(peer) = message.to_user {
        let (lo, hi) = (message.sender_id.min(peer), message.sender_id.max(peer));
        let (lo_next, hi_next): (u64, u64) = c
            .hot(Hot::NextCursors)?
            .query_row(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let members = if lo == hi {
            vec![(lo, lo_next)]
        } else {
            vec![(lo, lo_next), (hi, hi_next)]
        };
        insert_inbox_rows(c, &members, kind, message_id)?;
        return Ok(members);
    }
    // `LIMIT 17`: one more than FAN_OUT_ONE_BY_ONE (asserted next to it).
    let mut members = c.prepare_cached(
        "SELECT m.user_id, (SELECT COALESCE(MAX(i.cursor), 0) + 1 FROM inbox i WHERE i.user_id = m.user_id)
         FROM conversation_members m
         WHERE m.conversation_id = ?1 ORDER BY m.user_id LIMIT 17",
    )?;
    let small = members
        .query_map(params![conversation_id], |r| {
            Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?))
        })?
        .collect::<Result<Vec<(u64, u64)>, _>>()?;
    if small.len() <= FAN_OUT_ONE_BY_ONE {
        insert_inbox_rows(c, &small, kind, message_id)?;
        return Ok(small);
    }
    let mut deliveries = c
        .prepare_cached(
            "INSERT INTO inbox (user_id, cursor, kind, message_id)
             SELECT m.user_id, (SELECT COALESCE(MAX(i.cursor), 0) + 1 FROM inbox i WHERE i.user_id = m.user_id), ?2, ?3
             FROM conversation_members m WHERE m.conversation_id = ?1
             RETURNING user_id, cursor",
        )?
        .query_map(params![conversation_id, kind, message_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<(u64, u64)>, _>>()?;
    deliveries.sort_unstable();
    Ok(deliveries)
}

/// One inbox row per `(user, cursor)`, about `message_id`.
fn insert_inbox_rows(
    c: &Conn<'_>,
    rows: &[(u64, u64)],
    kind: &str,
    message_id: u64,
) -> Result<(), StoreError> {
    let mut insert = c.hot(Hot::InsertInboxRow)?;
    for &(user, cursor) in rows {
        insert.execute(params![user, cursor, kind, message_id])?;
    }
    Ok(())
}

/// The next cursor of two users' inboxes (`?1`, `?2`).
pub(super) const NEXT_CURSORS: &str =
    "SELECT (SELECT COALESCE(MAX(cursor), 0) + 1 FROM inbox WHERE user_id = ?1),
            (SELECT COALESCE(MAX(cursor), 0) + 1 FROM inbox WHERE user_id = ?2)";

pub(super) const INSERT_INBOX_ROW: &str =
    "INSERT INTO inbox (user_id, cursor, kind, message_id) VALUES (?1, ?2, ?3, ?4)";

/// Replaces a message's body (edit). The body it replaces is kept if
/// someone who left the conversation holds the message (see
/// [`record_departures`]).
pub fn edit(c: &Connection, id: u64, body: &str, now: i64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO message_versions (message_id, body, edited_at)
         SELECT m.id, m.body, m.edited_at FROM messages m
         WHERE m.id = ?1 AND EXISTS (
             SELECT 1 FROM departures d
             WHERE d.conversation_id = m.conversation_id AND d.left_seq >= m.seq AND d.joined_seq < m.seq)",
    )?
    .execute([id])?;
    c.prepare_cached("UPDATE messages SET body = ?2, edited_at = ?3 WHERE id = ?1")?
        .execute(params![id, body, now])?;
    // What was staged first (see `index_staged_text`), then this one.
    index_staged_text(c)?;
    unindex_text(c, id)?;
    if let Some(text) = text_of(body) {
        c.prepare_cached("INSERT INTO message_text (rowid, text) VALUES (?1, ?2)")?
            .execute(params![id, text])?;
    }
    Ok(())
}

/// Removes a message's content, earlier versions included, leaving a
/// tombstone (for former members too).
pub fn recall(c: &Connection, id: u64, now: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE messages SET body = '{}', recalled_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    c.prepare_cached("DELETE FROM message_versions WHERE message_id = ?1")?
        .execute([id])?;
    unindex_text(c, id)
}

/// Hides a message from one user's history (delete for me).
pub fn hide(c: &Connection, user_id: u64, id: u64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO hidden_messages (user_id, message_id) VALUES (?1, ?2)",
    )?
    .execute(params![user_id, id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::fulltext::INDEX_TEXT_AFTER;
    use super::super::Store;
    use super::*;
    use crate::store::messages::{DirectRoute, SendRoute, SendTo};

    /// A user's text message, stored as `Chat::send` stores it.
    fn text_message(
        c: &Conn<'_>,
        conversation_id: u64,
        sender: u64,
        client_msg_id: &str,
        text: &str,
    ) -> Result<MessageRow, StoreError> {
        let body = serde_json::json!({ "text": text }).to_string();
        let new = NewRow {
            conversation_id,
            sender,
            client_msg_id,
            body: &body,
            text: Some(text),
            kind: "user",
            now: 0,
            extras: None,
        };
        Ok(insert(c, &new)?.expect("a new client_msg_id"))
    }

    fn matches(c: &Connection, word: &str) -> Vec<u64> {
        let mut stmt = c
            .prepare("SELECT rowid FROM message_text WHERE message_text MATCH ?1 ORDER BY rowid")
            .unwrap();
        let rows = stmt.query_map([word], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[tokio::test]
    async fn a_direct_route_says_who_blocked_whom_and_the_conversation_once_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        store
            .write_sql(|c| {
                let a = users::insert(c, "alice", "!", 0)?.id;
                let b = users::insert(c, "bob", "!", 0)?.id;
                let route = |sender, peer| {
                    let asked = SendTo::User {
                        sender,
                        peer,
                        friends: false,
                    };
                    match routes(c, &[asked]).unwrap()[..] {
                        [SendRoute::User { route, friends }] => {
                            assert_eq!(friends, None, "not asked");
                            route
                        }
                        ref other => panic!("{other:?}"),
                    }
                };
                let open = DirectRoute {
                    peer_blocked_sender: false,
                    sender_blocked_peer: false,
                    conversation: None,
                };
                assert_eq!(route(a, b + 1), None, "no such peer");
                assert_eq!(route(a, b), Some(open));
                super::super::social::block(c, b, a, 0)?;
                let blocked_by_peer = DirectRoute {
                    peer_blocked_sender: true,
                    ..open
                };
                assert_eq!(route(a, b), Some(blocked_by_peer));
                let blocked_peer = DirectRoute {
                    sender_blocked_peer: true,
                    ..open
                };
                assert_eq!(route(b, a), Some(blocked_peer));
                let conv = direct_conversation(c, b, a, 0)?;
                assert_eq!(route(a, b).and_then(|r| r.conversation), Some(conv));
                assert_eq!(route(b, a).and_then(|r| r.conversation), Some(conv));
                assert_eq!(
                    route(a, a).and_then(|r| r.conversation),
                    None,
                    "notes to self"
                );
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }

    /// Every send runs [`LAST_MESSAGE`]: it must stay two index lookups,
    /// with no temporary table for a subquery or a sort.
    #[tokio::test]
    async fn the_last_message_is_read_without_a_temporary_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        let plan = store
            .read_sql(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {LAST_MESSAGE}"))?;
                let rows = stmt.query_map([0, 0], |r| r.get::<_, String>(3))?;
                Ok::<_, StoreError>(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH c USING INTEGER PRIMARY KEY"),
            "{plan:?}"
        );
        assert!(plan[1].starts_with("SEARCH m USING INDEX"), "{plan:?}");
        assert!(plan[1].contains("(conversation_id=?)"), "{plan:?}");
    }

    /// Text is indexed at the group's commit, so what a job (or a later job
    /// of the same group) does to a message before then must hold: a
    /// message recalled or edited before its text reached the index is
    /// found as it ended up, and a job that failed leaves nothing behind.
    #[tokio::test]
    async fn staged_text_is_indexed_as_it_was_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        let ids = store
            .write_sql(|c| {
                let a = users::insert(c, "alice", "!", 0)?.id;
                let b = users::insert(c, "bob", "!", 0)?.id;
                let conv = direct_conversation(c, a, b, 0)?;
                let kept = text_message(c, conv, a, "1", "apple pie")?.id;
                let recalled = text_message(c, conv, a, "2", "apple tart")?.id;
                recall(c, recalled, 1)?;
                let edited = text_message(c, conv, a, "3", "banana")?.id;
                edit(c, edited, r#"{"text":"cherry"}"#, 1)?;
                Ok::<_, StoreError>((conv, a, kept, edited))
            })
            .await
            .unwrap();
        let (conv, a, kept, edited) = ids;
        // A job that fails after staging text: rolled back with its savepoint.
        let failed: Result<(), StoreError> = store
            .write_sql(move |c| {
                text_message(c, conv, a, "4", "apple crumble")?;
                Err(StoreError::NotFound("on purpose"))
            })
            .await;
        assert!(failed.is_err());
        store.index_staged_text().await.unwrap();
        let (apple, banana, cherry) = store
            .read_sql(|c| {
                Ok::<_, StoreError>((
                    matches(c, "apple"),
                    matches(c, "banana"),
                    matches(c, "cherry"),
                ))
            })
            .await
            .unwrap();
        assert_eq!(apple, vec![kept]);
        assert_eq!(banana, Vec::<u64>::new());
        assert_eq!(cherry, vec![edited]);
        // Nothing stays staged once moved into the index.
        let staged: i64 = store
            .write_sql(|c| {
                Ok::<_, StoreError>(c.query_row(
                    "SELECT COUNT(*) FROM temp.staged_text",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(staged, 0);
    }

    /// Sends stage their text; it reaches the index in batches, before an
    /// edit, on request, or at the next start if chatd stopped first.
    /// A second insert under a sender's `client_msg_id` writes nothing: no
    /// row, no seq, no staged text; the first is found by `by_client_id`.
    #[tokio::test]
    async fn an_insert_under_a_used_client_msg_id_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        let (first, again, found, rows, staged) = store
            .write_sql(|c| {
                let a = users::insert(c, "alice", "!", 0)?.id;
                let b = users::insert(c, "bob", "!", 0)?.id;
                let conv = direct_conversation(c, a, b, 0)?;
                let first = text_message(c, conv, a, "same", "apple")?;
                let body = r#"{"text":"pear"}"#;
                let again = insert(
                    c,
                    &NewRow {
                        conversation_id: conv,
                        sender: a,
                        client_msg_id: "same",
                        body,
                        text: Some("pear"),
                        kind: "user",
                        now: 1,
                        extras: None,
                    },
                )?;
                let found = by_client_id(c, a, "same")?.map(|m| m.id);
                let rows: i64 = c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
                let staged: i64 =
                    c.query_row("SELECT count(*) FROM temp.staged_text", [], |r| r.get(0))?;
                Ok::<_, StoreError>((first.id, again, found, rows, staged))
            })
            .await
            .unwrap();
        assert!(again.is_none(), "{again:?}");
        assert_eq!((found, rows, staged), (Some(first), 1, 1));
    }

    #[tokio::test]
    async fn text_is_indexed_in_batches_and_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let store = Store::open(&path).unwrap();
        let (a, conv) = store
            .write_sql(|c| {
                let a = users::insert(c, "alice", "!", 0)?.id;
                let b = users::insert(c, "bob", "!", 0)?.id;
                Ok::<_, StoreError>((a, direct_conversation(c, a, b, 0)?))
            })
            .await
            .unwrap();
        let send = |store: &Store, id: String, text: &'static str| {
            let store = store.clone();
            async move {
                store
                    .write_sql(move |c| {
                        Ok::<_, StoreError>(text_message(c, conv, a, &id, text)?.id)
                    })
                    .await
                    .unwrap()
            }
        };
        let found = |store: &Store, word: &'static str| {
            let store = store.clone();
            async move {
                store
                    .read_sql(move |c| Ok::<_, StoreError>(matches(c, word)))
                    .await
                    .unwrap()
            }
        };

        // Fewer than a batch, one commit each: committed, not indexed yet.
        let mut apples = Vec::new();
        for i in 0..3 {
            apples.push(send(&store, format!("a{i}"), "apple").await);
        }
        assert_eq!(found(&store, "apple").await, Vec::<u64>::new());
        // A full batch: the commit that reaches it indexes them all.
        let mut pears = Vec::new();
        for i in 0..INDEX_TEXT_AFTER - apples.len() as i64 {
            pears.push(send(&store, format!("p{i}"), "pear").await);
        }
        assert_eq!(found(&store, "apple").await, apples);
        assert_eq!(found(&store, "pear").await, pears);

        // An edit indexes what was staged before it, then itself.
        let mango = send(&store, "m".into(), "mango").await;
        let edited = apples[0];
        store
            .write_sql(move |c| edit(c, edited, r#"{"text":"papaya"}"#, 1))
            .await
            .unwrap();
        assert_eq!(found(&store, "mango").await, vec![mango]);
        assert_eq!(found(&store, "papaya").await, vec![edited]);

        // Staged when the store goes away without `close` (a crash loses
        // the writer's temp table): indexed when it opens again.
        let kept = send(&store, "k1".into(), "kiwi").await;
        let recalled = send(&store, "k2".into(), "kiwi").await;
        store
            .write_sql(move |c| recall(c, recalled, 1))
            .await
            .unwrap();
        let kiwis = vec![kept, send(&store, "k3".into(), "kiwi").await];
        assert_eq!(found(&store, "kiwi").await, Vec::<u64>::new());
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            found(&store, "kiwi").await,
            kiwis,
            "the recalled one stays out"
        );
        assert_eq!(found(&store, "papaya").await, vec![edited]);
        assert_eq!(found(&store, "pear").await, pears);
    }

    /// A search on a reader finds what the index does not hold yet (staged
    /// on the writer), once, and the same after it is indexed; messages of
    /// other kinds count towards a flush, so what a search reads outside
    /// the index stays bounded whatever was sent.
    #[tokio::test]
    async fn a_search_on_a_reader_finds_text_not_indexed_yet_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        let (a, b, conv) = store
            .write_sql(|c| {
                let a = users::insert(c, "alice", "!", 0)?.id;
                let b = users::insert(c, "bob", "!", 0)?.id;
                Ok::<_, StoreError>((a, b, direct_conversation(c, a, b, 0)?))
            })
            .await
            .unwrap();
        let search = |word: &'static str| {
            let store = store.clone();
            async move {
                store
                    .read_sql(move |c| search(c, b, &format!("\"{word}\""), 100, 0))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| m.id)
                    .collect::<Vec<u64>>()
            }
        };
        let owl = store
            .write_sql(move |c| Ok::<_, StoreError>(text_message(c, conv, a, "o", "owl")?.id))
            .await
            .unwrap();
        assert_eq!(
            store
                .read_sql(|c| Ok::<_, StoreError>(matches(c, "owl")))
                .await
                .unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(
            search("owl").await,
            vec![owl],
            "staged, found by the reader"
        );
        // Messages without text: the index catches up after a batch.
        store
            .write_sql(move |c| {
                for i in 0..INDEX_TEXT_AFTER {
                    let new = NewRow {
                        conversation_id: conv,
                        sender: a,
                        client_msg_id: &format!("x{i}"),
                        body: r#"{"location":[0,0]}"#,
                        text: None,
                        kind: "user",
                        now: 0,
                        extras: None,
                    };
                    insert(c, &new)?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        let behind: i64 = store
            .read_sql(|c| {
                Ok::<_, StoreError>(c.query_row(
                    "SELECT (SELECT MAX(id) FROM messages) - indexed_through FROM text_index",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(behind, 0);
        assert_eq!(
            store
                .read_sql(|c| Ok::<_, StoreError>(matches(c, "owl")))
                .await
                .unwrap(),
            vec![owl]
        );
        assert_eq!(search("owl").await, vec![owl], "indexed, found once");
    }

    /// The sender's read marker is written only when others' messages were
    /// unread; the unread counts are what they would be had it moved at
    /// every send.
    #[tokio::test]
    async fn sending_reads_what_others_sent_and_writes_the_marker_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        store
            .write_sql(|c| {
                let a = users::insert(c, "a", "!", 0)?.id;
                let b = users::insert(c, "b", "!", 0)?.id;
                let conv = direct_conversation(c, a, b, 0)?;
                let marker = |u: u64| membership(c, u, conv).map(|m| m.map(|m| m.read_seq));
                let send = |from: u64, id: &str| text_message(c, conv, from, id, "x");
                let writes = || c.total_changes();

                // a's first messages: nothing of b's to read, no marker write.
                send(a, "a1")?;
                let before = writes();
                send(a, "a2")?;
                // The message and its staged text: no marker, and nothing
                // of the conversation's.
                assert_eq!(writes() - before, 2);
                assert_eq!((marker(a)?, unread(c, a, conv)?), (Some(0), 0));
                assert_eq!(unread(c, b, conv)?, 2);

                // b answers twice: a has 2 unread; b's marker moves past a's.
                send(b, "b1")?;
                assert_eq!(marker(b)?, Some(3));
                send(b, "b2")?;
                assert_eq!((marker(b)?, unread(c, b, conv)?), (Some(3), 0));
                assert_eq!(unread(c, a, conv)?, 2);

                // a replies: what b sent is read.
                send(a, "a3")?;
                assert_eq!((marker(a)?, unread(c, a, conv)?), (Some(5), 0));
                assert_eq!(unread(c, b, conv)?, 1);

                // a reads up to the end, b writes, then a writes again.
                mark_read(c, b, conv, 5)?;
                send(b, "b3")?;
                mark_read(c, a, conv, 6)?;
                let before = writes();
                send(a, "a4")?;
                assert_eq!(writes() - before, 2, "everything was read already");
                assert_eq!((marker(a)?, unread(c, a, conv)?), (Some(6), 0));
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }

    /// Every fan-out path (direct conversations and notes to self from the
    /// message row, one-row statements for small groups, one set statement
    /// for large ones) gives every member exactly one inbox row per event,
    /// at the next gap-free cursor, and says so.
    #[tokio::test]
    async fn fan_out_gives_every_member_the_next_cursor_small_or_large() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chat.db")).unwrap();
        store
            .write_sql(|c| {
                let users: Vec<u64> = (0..FAN_OUT_ONE_BY_ONE + 5)
                    .map(|i| users::insert(c, &format!("u{i}"), "!", 0).map(|u| u.id))
                    .collect::<Result<_, _>>()?;
                let dm = direct_conversation(c, users[0], users[1], 0)?;
                let notes = direct_conversation(c, users[0], users[0], 0)?;
                let small = super::super::groups::create(c, "small", users[0], 0)?;
                let large = super::super::groups::create(c, "large", users[0], 0)?;
                for &u in &users[1..3] {
                    add_member(c, small.conversation_id, u, "member", 0)?;
                }
                for &u in &users[1..] {
                    add_member(c, large.conversation_id, u, "member", 0)?;
                }
                // An event before, so cursors differ between users.
                append(c, users[2], "test", None, Some("{}"))?;
                let mut expected: std::collections::HashMap<u64, u64> =
                    users.iter().map(|&u| (u, 0)).collect();
                *expected.get_mut(&users[2]).unwrap() += 1;
                // (conversation, sender, members)
                for (conv, sender, members) in [
                    (dm, users[0], &users[..2]),
                    (notes, users[0], &users[..1]),
                    (small.conversation_id, users[0], &users[..3]),
                    (large.conversation_id, users[0], &users[..]),
                    (dm, users[1], &users[..2]),
                ] {
                    let id = format!("m{conv}-{}", expected[&sender]);
                    let m = text_message(c, conv, sender, &id, "x")?;
                    let got = fan_out(c, &m, "message.created")?;
                    let want: Vec<(u64, u64)> = members
                        .iter()
                        .map(|&u| {
                            let next = expected[&u] + 1;
                            expected.insert(u, next);
                            (u, next)
                        })
                        .collect();
                    assert_eq!(got, want, "conversation {conv}");
                    for &(u, cursor) in &got {
                        let id: Option<u64> = c.query_row(
                            "SELECT message_id FROM inbox WHERE user_id = ?1 AND cursor = ?2",
                            params![u, cursor],
                            |r| r.get(0),
                        )?;
                        assert_eq!(id, Some(m.id));
                    }
                }
                for (&u, &last) in &expected {
                    let (n, max): (u64, u64) = c.query_row(
                        "SELECT COUNT(*), COALESCE(MAX(cursor), 0) FROM inbox WHERE user_id = ?1",
                        [u],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    assert_eq!((n, max), (last, last), "user {u}");
                    assert_eq!(inbox_head(c, u)?, last, "user {u}");
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }
}
