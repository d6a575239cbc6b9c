//! PostgreSQL: the send path of [`crate::store::messages`], set-based. The
//! writer hands every send of a group commit to the domain at once
//! (`store::Batch`), and the domain asks here about all of them in one
//! statement ([`routes`]) and stores all that may go in one more
//! ([`post_many`]), where sending them one at a time cost a few statements,
//! each a round trip, per send.

use super::messages::{opt_uint, uint};
use super::Session;
use crate::store::messages::{
    DirectRoute, GroupRoute, MessageRow, NewRow, Posted, SendRoute, SendTo,
};
use crate::store::StoreError;

/// What each send's checks need, in one statement: for a direct message
/// whether the peer exists, the blocks either way, the conversation and
/// (if asked) the friendship; for a group's, the group's conversation and
/// the sender's membership. A direct message's columns are NULL or false
/// for a group's and the other way round; the caller reads the ones its
/// [`SendTo`] asked about.
const ROUTES: &str = "SELECT u.id IS NOT NULL,
        EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = q.peer AND b.blocked_id = q.sender),
        EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = q.sender AND b.blocked_id = q.peer),
        (SELECT c.id FROM conversations c WHERE c.kind = 'direct'
           AND c.user_lo = LEAST(q.sender, q.peer) AND c.user_hi = GREATEST(q.sender, q.peer)),
        CASE WHEN q.friends THEN
          EXISTS (SELECT 1 FROM friends f WHERE f.user_id = q.sender AND f.friend_id = q.peer) END,
        g.conversation_id,
        EXISTS (SELECT 1 FROM conversation_members cm
                WHERE cm.user_id = q.sender AND cm.conversation_id = g.conversation_id)
     FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::boolean[])
          WITH ORDINALITY AS q (sender, peer, grp, friends, ord)
     LEFT JOIN users u ON u.id = q.peer
     LEFT JOIN groups g ON g.id = q.grp AND g.dissolved_at IS NULL
     ORDER BY q.ord";

/// What the checks of many sends need to know, in their order, in one
/// statement.
pub fn routes(c: &Session<'_>, sends: &[SendTo]) -> Result<Vec<SendRoute>, StoreError> {
    if sends.is_empty() {
        return Ok(Vec::new());
    }
    let n = sends.len();
    let (mut senders, mut peers, mut groups, mut friends) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for to in sends {
        let (sender, peer, group, ask) = match *to {
            SendTo::User {
                sender,
                peer,
                friends,
            } => (sender, Some(peer as i64), None, friends),
            SendTo::Group { sender, group } => (sender, None, Some(group as i64), false),
        };
        senders.push(sender as i64);
        peers.push(peer);
        groups.push(group);
        friends.push(ask);
    }
    let rows = c.query(ROUTES, &[&senders, &peers, &groups, &friends])?;
    if rows.len() != n {
        return Err(StoreError::CommitFailed(format!(
            "{} routes for {n} sends",
            rows.len()
        )));
    }
    sends
        .iter()
        .zip(&rows)
        .map(|(to, r)| {
            Ok(match to {
                SendTo::User { .. } => {
                    let route = if r.try_get::<_, bool>(0)? {
                        Some(DirectRoute {
                            peer_blocked_sender: r.try_get(1)?,
                            sender_blocked_peer: r.try_get(2)?,
                            conversation: opt_uint(r, 3)?,
                        })
                    } else {
                        None
                    };
                    let open =
                        route.is_some_and(|r| !r.peer_blocked_sender && !r.sender_blocked_peer);
                    let friends = if open { r.try_get(4)? } else { None };
                    SendRoute::User { route, friends }
                }
                SendTo::Group { .. } => {
                    let group = opt_uint(r, 5)?
                        .map(|conversation| {
                            Ok::<_, StoreError>(GroupRoute {
                                conversation,
                                member: r.try_get(6)?,
                            })
                        })
                        .transpose()?;
                    SendRoute::Group(group)
                }
            })
        })
        .collect()
}

/// Every row of a group's sends stored, in one statement of data-modifying
/// CTEs (each part sees the database as it was before the statement, and
/// what the others return):
///
/// - `fresh`: the rows whose `client_msg_id` their sender never used (the
///   first of each, if `rows` repeats one), so that a resend takes no seq;
/// - `n`: their seqs, each conversation's `last_seq` plus their rank in it,
///   in queue order, the sender of the message just before each (the
///   one before it in the group, or the conversation's newest), and when
///   each disappears (a user message in a conversation with a TTL);
/// - `seqs`: each conversation's `last_seq` bumped once, to its highest;
/// - `m`: the messages, in queue order;
/// - `markers`: each sender's read marker moved as SQLite's `insert` moves
///   it one message at a time (to their message when the one just before is
///   someone else's and past the marker): to the highest such message of
///   theirs in the conversation, since the condition holds for it whenever
///   it holds for an earlier one;
/// - `fan`: one inbox row per member per message, each member's cursors
///   counted from `users.inbox_cursor` in queue order;
/// - `cursors`: each member's `inbox_cursor` bumped once, to their highest;
/// - `delivered`: the inbox rows.
///
/// It returns a row per message stored and one per inbox row, apart (a
/// join of the two, with the few rows the planner expects of `unnest`,
/// became a nested loop that cost more than all the writes).
///
/// The counters are read from the statement's snapshot and written once
/// each, which is sound because the transaction holds their rows' locks
/// (`writer.rs`). No `ON CONFLICT`: under those locks the unique keys
/// can't collide, and if they ever did the statement fails and the group
/// with it, rather than leave a gap in a seq.
const POST_MANY: &str = "WITH s AS (
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                              $8::bigint[], $9::text[], $10::text[])
             WITH ORDINALITY AS s (conversation_id, sender_id, client_msg_id, body, sent_at, kind,
                                   reply_to, mentions, forwarded_from, ord)
     ), fresh AS (
         SELECT DISTINCT ON (s.sender_id, s.client_msg_id) s.* FROM s
         WHERE NOT EXISTS (SELECT 1 FROM messages m
                           WHERE m.sender_id = s.sender_id AND m.client_msg_id = s.client_msg_id)
         ORDER BY s.sender_id, s.client_msg_id, s.ord
     ), n AS (
         SELECT f.*, c.last_seq + row_number() OVER w AS seq,
                COALESCE(lag(f.sender_id) OVER w,
                         (SELECT p.sender_id FROM messages p
                          WHERE p.conversation_id = c.id AND p.seq = c.last_seq)) AS previous_sender,
                CASE WHEN c.kind = 'direct'
                     THEN (CASE WHEN f.sender_id = c.user_lo THEN c.user_hi ELSE c.user_lo END) END AS to_user,
                c.group_id,
                CASE WHEN f.kind = 'user' AND c.message_ttl_seconds IS NOT NULL
                     THEN f.sent_at + c.message_ttl_seconds * 1000 END AS expires_at
         FROM fresh f JOIN conversations c ON c.id = f.conversation_id
         WINDOW w AS (PARTITION BY f.conversation_id ORDER BY f.ord)
     ), seqs AS (
         UPDATE conversations c SET last_seq = top.seq
         FROM (SELECT conversation_id, max(seq) AS seq FROM n GROUP BY conversation_id) top
         WHERE c.id = top.conversation_id
     ), m AS (
         INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, body, sent_at, kind, expires_at,
                               reply_to, mentions, forwarded_from)
         SELECT conversation_id, seq, sender_id, client_msg_id, body, sent_at, kind, expires_at,
                reply_to, mentions, forwarded_from FROM n ORDER BY ord
         RETURNING id, conversation_id, seq
     ), markers AS (
         UPDATE conversation_members cm SET read_seq = moved.seq
         FROM (SELECT conversation_id, sender_id, max(seq) AS seq FROM n
               WHERE previous_sender <> sender_id
               GROUP BY conversation_id, sender_id) moved
         WHERE cm.conversation_id = moved.conversation_id AND cm.user_id = moved.sender_id
           AND cm.read_seq < moved.seq - 1
     ), fan AS (
         SELECT cm.user_id, m.id AS message_id, n.ord,
                u.inbox_cursor + row_number() OVER (PARTITION BY cm.user_id ORDER BY n.ord) AS cursor
         FROM n
         JOIN m ON m.conversation_id = n.conversation_id AND m.seq = n.seq
         JOIN conversation_members cm ON cm.conversation_id = n.conversation_id
         JOIN users u ON u.id = cm.user_id
     ), cursors AS (
         UPDATE users u SET inbox_cursor = top.cursor
         FROM (SELECT user_id, max(cursor) AS cursor FROM fan GROUP BY user_id) top
         WHERE u.id = top.user_id
     ), delivered AS (
         INSERT INTO inbox (user_id, cursor, kind, message_id)
         SELECT user_id, cursor, $7, message_id FROM fan
     )
     SELECT n.ord, m.id, n.seq, n.to_user, n.group_id, NULL::bigint, NULL::bigint, n.expires_at
     FROM n JOIN m ON m.conversation_id = n.conversation_id AND m.seq = n.seq
     UNION ALL
     SELECT ord, NULL, NULL, NULL, NULL, user_id, cursor, NULL FROM fan";

/// Stores the messages of many sends and their inbox rows in one
/// statement ([`POST_MANY`]); `None` for a row whose `client_msg_id` its
/// sender used before, or earlier in `rows`.
pub fn post_many(
    c: &Session<'_>,
    rows: &[NewRow<'_>],
    kind: &str,
) -> Result<Vec<Option<Posted>>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let n = rows.len();
    let conversations: Vec<i64> = rows.iter().map(|r| r.conversation_id as i64).collect();
    let senders: Vec<i64> = rows.iter().map(|r| r.sender as i64).collect();
    let client_msg_ids: Vec<&str> = rows.iter().map(|r| r.client_msg_id).collect();
    let bodies: Vec<&str> = rows.iter().map(|r| r.body).collect();
    let sent_at: Vec<i64> = rows.iter().map(|r| r.now).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let reply_to: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.extras.and_then(|x| x.reply_to).map(|id| id as i64))
        .collect();
    let mentions: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r.extras.and_then(|x| x.mentions.as_deref()))
        .collect();
    let forwarded_from: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r.extras.and_then(|x| x.forwarded_from.as_deref()))
        .collect();
    let stored = c.query(
        POST_MANY,
        &[
            &conversations,
            &senders,
            &client_msg_ids,
            &bodies,
            &sent_at,
            &kinds,
            &kind,
            &reply_to,
            &mentions,
            &forwarded_from,
        ],
    )?;
    let mut posted: Vec<Option<Posted>> = (0..n).map(|_| None).collect();
    let mut deliveries: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n];
    for r in &stored {
        // WITH ORDINALITY counts from 1.
        let at = usize::try_from(r.try_get::<_, i64>(0)? - 1)
            .ok()
            .filter(|&at| at < n)
            .ok_or_else(|| StoreError::CommitFailed("a stored row out of range".into()))?;
        let Some(id) = opt_uint(r, 1)? else {
            deliveries[at].push((uint(r, 5)?, uint(r, 6)?));
            continue;
        };
        let new = &rows[at];
        posted[at] = Some(Posted {
            row: MessageRow {
                id,
                conversation_id: new.conversation_id,
                seq: uint(r, 2)?,
                sender_id: new.sender,
                to_user: opt_uint(r, 3)?,
                to_group: opt_uint(r, 4)?,
                client_msg_id: new.client_msg_id.to_owned(),
                body: new.body.to_owned(),
                sent_at: new.now,
                kind: new.kind.to_owned(),
                edited_at: None,
                recalled_at: None,
                expires_at: r.try_get(7)?,
                extras: new.extras.map(|x| Box::new(x.clone())),
            },
            deliveries: Vec::new(),
        });
    }
    for (posted, mut inbox) in posted.iter_mut().zip(deliveries) {
        if let Some(posted) = posted {
            inbox.sort_unstable();
            posted.deliveries = inbox;
        }
    }
    Ok(posted)
}
