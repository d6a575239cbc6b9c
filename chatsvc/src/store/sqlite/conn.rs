//! The writer's connection, with the statements of the send path kept
//! prepared for the writer's lifetime.
//!
//! rusqlite's statement cache (`prepare_cached`) costs, on every use, a hash
//! of the SQL text to find the statement, a new `Arc<str>` key, and a second
//! hash and an LRU insert to give it back, and a direct message runs eight
//! or nine statements. The writer
//! instead holds those statements ([`Hot`]) in cells of its own, prepared at
//! first use, reached by index. Every other statement still goes through
//! rusqlite's cache, as on the readers.

use std::cell::{OnceCell, RefCell, RefMut};
use std::ops::{Deref, DerefMut};

use rusqlite::{CachedStatement, Connection, PrepFlags, Statement};

use super::{conversations, fulltext, messages, replies, social, webhooks};

/// A statement the writer runs for nearly every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hot {
    ByClientId,
    DirectRoute,
    AreFriends,
    LastMessage,
    InsertMessage,
    PassReadMarker,
    StageText,
    NextCursors,
    InsertInboxRow,
    ActiveWebhooks,
    InsertMessageWithExtras,
    ReplyTarget,
}

impl Hot {
    const COUNT: usize = Hot::ReplyTarget as usize + 1;

    fn sql(self) -> &'static str {
        match self {
            Hot::ByClientId => messages::BY_CLIENT_ID,
            Hot::DirectRoute => conversations::DIRECT_ROUTE,
            Hot::AreFriends => social::ARE_FRIENDS,
            Hot::LastMessage => messages::LAST_MESSAGE,
            Hot::InsertMessage => messages::INSERT_MESSAGE,
            Hot::PassReadMarker => messages::PASS_READ_MARKER,
            Hot::StageText => fulltext::STAGE_TEXT,
            Hot::NextCursors => messages::NEXT_CURSORS,
            Hot::InsertInboxRow => messages::INSERT_INBOX_ROW,
            Hot::ActiveWebhooks => webhooks::ACTIVE,
            Hot::InsertMessageWithExtras => messages::INSERT_MESSAGE_WITH_EXTRAS,
            Hot::ReplyTarget => replies::REPLY_TARGET,
        }
    }
}

/// The connection write jobs get: derefs to the writer's [`Connection`],
/// and lends the [`Hot`] statements.
pub struct Conn<'c> {
    conn: &'c Connection,
    held: [OnceCell<RefCell<Statement<'c>>>; Hot::COUNT],
}

impl<'c> Conn<'c> {
    pub(super) fn new(conn: &'c Connection) -> Conn<'c> {
        Conn {
            conn,
            held: std::array::from_fn(|_| OnceCell::new()),
        }
    }

    /// The statement `hot`, reset, prepared on first use. If it is already
    /// lent (a job that runs it again while stepping it), a second copy
    /// comes from rusqlite's cache.
    pub(super) fn hot(&self, hot: Hot) -> rusqlite::Result<Stmt<'_, 'c>> {
        let cell = &self.held[hot as usize];
        if cell.get().is_none() {
            let stmt = self
                .conn
                .prepare_with_flags(hot.sql(), PrepFlags::SQLITE_PREPARE_PERSISTENT)?;
            let _ = cell.set(RefCell::new(stmt));
        }
        match cell.get().map(RefCell::try_borrow_mut) {
            Some(Ok(stmt)) => Ok(Stmt::Held(stmt)),
            _ => self.conn.prepare_cached(hot.sql()).map(Stmt::Cached),
        }
    }
}

impl Deref for Conn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// A [`Hot`] statement on loan from a [`Conn`].
pub(super) enum Stmt<'a, 'c> {
    Held(RefMut<'a, Statement<'c>>),
    Cached(CachedStatement<'c>),
}

impl<'c> Deref for Stmt<'_, 'c> {
    type Target = Statement<'c>;

    fn deref(&self) -> &Statement<'c> {
        match self {
            Stmt::Held(s) => s,
            Stmt::Cached(s) => s,
        }
    }
}

impl<'c> DerefMut for Stmt<'_, 'c> {
    fn deref_mut(&mut self) -> &mut Statement<'c> {
        match self {
            Stmt::Held(s) => s,
            Stmt::Cached(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_statement_lent_twice_at_once_gives_a_second_copy() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, sender_id INTEGER, client_msg_id TEXT);
             INSERT INTO messages VALUES (1, 7, 'a'), (2, 7, 'b');",
        )
        .unwrap();
        let c = Conn::new(&conn);
        let mut first = c.hot(Hot::ByClientId).unwrap();
        let mut rows = first.query((7, "a")).unwrap();
        let mut second = c.hot(Hot::ByClientId).unwrap();
        assert!(matches!(second, Stmt::Cached(_)));
        let b: u64 = second.query_row((7, "b"), |r| r.get(0)).unwrap();
        let a: u64 = rows.next().unwrap().unwrap().get(0).unwrap();
        assert_eq!((a, b), (1, 2));
        drop(rows);
        drop((first, second));
        assert!(matches!(c.hot(Hot::ByClientId).unwrap(), Stmt::Held(_)));
    }

    #[test]
    fn every_hot_statement_prepares_against_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(&dir.path().join("chat.db")).unwrap();
        drop(store);
        let conn = Connection::open(dir.path().join("chat.db")).unwrap();
        super::super::fulltext::prepare_text_staging(&conn).unwrap();
        let c = Conn::new(&conn);
        for (i, &hot) in ALL.iter().enumerate() {
            assert_eq!(hot as usize, i, "ALL is in declaration order");
            c.hot(hot).unwrap_or_else(|e| panic!("{hot:?}: {e}"));
        }
    }

    const ALL: [Hot; Hot::COUNT] = [
        Hot::ByClientId,
        Hot::DirectRoute,
        Hot::AreFriends,
        Hot::LastMessage,
        Hot::InsertMessage,
        Hot::PassReadMarker,
        Hot::StageText,
        Hot::NextCursors,
        Hot::InsertInboxRow,
        Hot::ActiveWebhooks,
        Hot::InsertMessageWithExtras,
        Hot::ReplyTarget,
    ];
}
