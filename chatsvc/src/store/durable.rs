//! Acknowledged means durable, without the writer waiting for the disk.
//!
//! The writer commits each group with `synchronous=NORMAL`: COMMIT writes
//! the group's WAL frames and returns without an fsync. The `store-notify`
//! thread then fdatasyncs the WAL file, once for every group committed
//! since its last sync, and only after that answers the groups' jobs and
//! runs their after-commit work (pushes, webhooks). Meanwhile the writer
//! already runs the next group: the fsync, most of a small commit's time
//! here, no longer holds it up. A send is still answered only once it is on
//! disk, as with `synchronous=FULL`.
//!
//! Readers are the other side: SQLite shows a commit to other connections
//! as soon as COMMIT returns, before the sync. [`Durability`] numbers the
//! commits, and [`super::Store::read`] waits, before returning what it
//! read, until every commit it may have seen is synced: nobody learns of a
//! message that a power cut could still take back.
//!
//! SQLite itself still syncs whatever its own safety needs in this mode:
//! the WAL header when the WAL starts over, and the WAL then the database
//! in every checkpoint that lets it start over, so frames a restart
//! overwrites are already durable in the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use rusqlite::Connection;

use super::StoreError;

/// How the notify thread makes the WAL durable: an fdatasync of the WAL
/// file (tests wrap it to hold a sync and see what waits for it).
pub(super) type SyncWal = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// Commit numbers: those begun by the writer, and those synced.
#[derive(Debug, Default)]
pub(super) struct Durability {
    /// The last commit begun (counted before its COMMIT runs).
    committed: AtomicU64,
    /// The last commit whose frames are on disk (or that failed).
    synced: Mutex<u64>,
    changed: Condvar,
}

impl Durability {
    /// Numbers the commit about to run; call it before COMMIT, so a reader
    /// that sees the commit also sees its number.
    pub(super) fn begin_commit(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Every commit up to `commit` is on disk (or failed, and left nothing).
    pub(super) fn synced(&self, commit: u64) {
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if commit > *synced {
            *synced = commit;
            self.changed.notify_all();
        }
    }

    /// Blocks until every commit begun so far is synced: after a read,
    /// everything it saw is durable.
    pub(super) fn wait_for_visible(&self) {
        let wanted = self.committed.load(Ordering::SeqCst);
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        while *synced < wanted {
            synced = self
                .changed
                .wait(synced)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Switches the writer's connection to committing without an fsync and
/// returns what syncs its WAL instead, or `None` (nothing changed) when the
/// database is not a WAL file on disk: then every COMMIT syncs as before.
pub(super) fn sync_outside_commit(conn: &Connection) -> Result<Option<SyncWal>, StoreError> {
    let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    let path = match conn.path() {
        Some(p) if !p.is_empty() && journal.eq_ignore_ascii_case("wal") => p.to_owned(),
        _ => return Ok(None),
    };
    // The WAL file exists from the first transaction in WAL mode on; this
    // read makes sure of it.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })?;
    let wal_path = format!("{path}-wal");
    let wal = std::fs::File::open(&wal_path)
        .map_err(|e| StoreError::Migration(format!("open {wal_path}: {e}")))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(Some(Box::new(move || wal.sync_data())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use super::Durability;

    #[test]
    fn a_reader_waits_for_the_commits_begun_before_it_asked() {
        let d = Arc::new(Durability::default());
        d.wait_for_visible(); // nothing begun: returns at once
        let first = d.begin_commit();
        let second = d.begin_commit();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let d = d.clone();
            std::thread::spawn(move || {
                d.wait_for_visible();
                tx.send(()).unwrap();
            })
        };
        d.synced(first);
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "returned with commit 2 not synced"
        );
        d.synced(second);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        reader.join().unwrap();
        // Synced numbers never go back.
        d.synced(first);
        d.wait_for_visible();
    }
}
