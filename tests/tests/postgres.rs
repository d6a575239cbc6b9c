//! The PostgreSQL store backend's foundations against a real server (a
//! throwaway cluster, see `mqchat_e2e::postgres`): migrations under the
//! advisory lock, the settings every pooled connection starts with,
//! transactions, and a database that goes away and comes back.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use mqchat_chatsvc::store::postgres::{self, Backend, Mode, Options, SCHEMA_VERSION};
use mqchat_chatsvc::store::StoreError;
use mqchat_e2e::eventually;
use mqchat_e2e::postgres::TestPostgres;

/// A user row, the smallest write the schema takes.
const INSERT_USER: &str =
    "INSERT INTO users (username, password_hash, created_at) VALUES ($1, '!', 0)";

async fn count_users(backend: &Backend) -> Result<i64> {
    Ok(backend
        .run(Mode::Read, |s| {
            Ok::<_, StoreError>(s.query_one("SELECT count(*) FROM users", &[])?.get(0))
        })
        .await?)
}

/// A fresh cluster and a backend on its database; `None` when the test is
/// to be skipped (see [`TestPostgres::init`]).
async fn fresh(options: &Options) -> Result<Option<(TestPostgres, Backend)>> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(None);
    };
    let backend = Backend::connect(&pg.url(), options).await?;
    Ok(Some((pg, backend)))
}

/// The SQLSTATE of a PostgreSQL error, if it is one.
fn sqlstate(e: &StoreError) -> Option<&str> {
    match e {
        StoreError::Postgres(e) => e.code().map(|c| c.code()),
        _ => None,
    }
}

/// Two nodes starting at once on an empty database: one migrates while
/// the other waits on the advisory lock, then finds the work done. Each
/// version is applied once, and a later start applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let url = pg.url();
    let nodes: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Backend::connect(&url, &Options::default()).await })
        })
        .collect();
    let mut backends = Vec::new();
    for node in nodes {
        backends.push(node.await??);
    }
    let again = Backend::connect(&url, &Options::default()).await?;
    let applied: Vec<(i32, i64)> = again
        .run(Mode::Read, |s| {
            let rows = s.query(
                "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
                &[],
            )?;
            Ok::<_, StoreError>(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .await?;
    let once: Vec<(i32, i64)> = postgres::migration_versions()
        .into_iter()
        .map(|v| (v, 1))
        .collect();
    assert_eq!(applied, once);
    // Every node sees the whole schema.
    for backend in &backends {
        assert_eq!(count_users(backend).await?, 0);
    }
    Ok(())
}

/// Every pooled connection commits durably, names itself, and has its
/// statements cut off at the configured timeout, whatever the database's
/// defaults or the URL say; a statement cut off is "unavailable", and the
/// connection serves the next transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_are_durable_and_time_out() -> Result<()> {
    let Some((pg, setup)) = fresh(&Options::default()).await? else {
        return Ok(());
    };
    // Defaults that would undo the backend's settings if it did not send
    // its own with every connection.
    setup
        .run(Mode::Write, |s| {
            s.execute("ALTER DATABASE chat SET synchronous_commit = off", &[])?;
            s.execute("ALTER DATABASE chat SET statement_timeout = 0", &[])?;
            s.execute("ALTER DATABASE chat SET application_name = 'other'", &[])?;
            Ok::<_, StoreError>(())
        })
        .await?;
    let options = Options {
        max_connections: 1,
        statement_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    // And a URL asking for asynchronous commits, which chatd's own
    // settings come after.
    let url = format!("{}?options=-c%20synchronous_commit%3Doff", pg.url());
    let backend = Backend::connect(&url, &options).await?;
    let settings: Vec<String> = backend
        .run(Mode::Read, |s| {
            [
                "synchronous_commit",
                "statement_timeout",
                "application_name",
            ]
            .iter()
            .map(|name| Ok(s.query_one(&format!("SHOW {name}"), &[])?.get(0)))
            .collect::<Result<_, StoreError>>()
        })
        .await?;
    assert_eq!(settings, ["on", "300ms", "chatd"]);

    let started = Instant::now();
    let slept = backend
        .run(Mode::Read, |s| {
            s.query_one("SELECT pg_sleep(10)", &[]).map(drop)
        })
        .await;
    let Err(e) = slept else {
        bail!("a statement past statement_timeout succeeded");
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sqlstate(&e), Some("57014"), "{e}");
    assert!(e.is_unavailable(), "{e}");
    // The one connection of the pool goes on serving.
    assert_eq!(count_users(&backend).await?, 0);
    Ok(())
}

/// A write commits only when its closure returns `Ok`; a read sees one
/// snapshot and cannot write; a unique violation maps to `Conflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_whole_or_not_at_all() -> Result<()> {
    let Some((_pg, backend)) = fresh(&Options::default()).await? else {
        return Ok(());
    };

    let failed = backend
        .run(Mode::Write, |s| {
            assert_eq!(s.execute(INSERT_USER, &[&"alice"])?, 1);
            Err::<(), _>(StoreError::NotFound("on purpose"))
        })
        .await;
    assert!(
        matches!(failed, Err(StoreError::NotFound("on purpose"))),
        "{failed:?}"
    );
    assert_eq!(count_users(&backend).await?, 0, "rolled back");

    let id: i64 = backend
        .run(Mode::Write, |s| {
            let row = s.query_opt(&format!("{INSERT_USER} RETURNING id"), &[&"alice"])?;
            Ok::<_, StoreError>(row.map_or(0, |r| r.get(0)))
        })
        .await?;
    assert!(id > 0);
    assert_eq!(count_users(&backend).await?, 1, "committed");

    // Usernames are unique whatever their case.
    let taken = backend
        .run(Mode::Write, |s| {
            s.execute(INSERT_USER, &[&"ALICE"])
                .map_err(postgres::conflict("username"))
        })
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict("username"))),
        "{taken:?}"
    );

    let in_read = backend
        .run(Mode::Read, |s| s.execute(INSERT_USER, &[&"bob"]))
        .await;
    let Err(e) = in_read else {
        bail!("a read transaction wrote");
    };
    assert_eq!(sqlstate(&e), Some("25006"), "read-only transaction: {e}");

    // A write that commits while a read is under way is not seen by the
    // read's later statements.
    let writer = backend.clone();
    let (before, after) = backend
        .run(Mode::Read, move |s| {
            let before: i64 = s.query_one("SELECT count(*) FROM users", &[])?.get(0);
            tokio::runtime::Handle::current().block_on(writer.run(Mode::Write, |w| {
                w.execute(INSERT_USER, &[&"carol"]).map(drop)
            }))?;
            let after: i64 = s.query_one("SELECT count(*) FROM users", &[])?.get(0);
            Ok::<_, StoreError>((before, after))
        })
        .await?;
    assert_eq!((before, after), (1, 1), "one snapshot per read");
    assert_eq!(count_users(&backend).await?, 2);
    Ok(())
}

/// A database whose schema is newer than this build is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() -> Result<()> {
    let Some((pg, backend)) = fresh(&Options::default()).await? else {
        return Ok(());
    };
    backend
        .run(Mode::Write, |s| {
            s.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&(SCHEMA_VERSION + 1)],
            )
        })
        .await?;
    let refused = Backend::connect(&pg.url(), &Options::default()).await;
    assert!(
        matches!(refused, Err(StoreError::Migration(ref m)) if m.contains("newer")),
        "{refused:?}"
    );
    Ok(())
}

/// PostgreSQL stopped: transactions fail as unavailable (a 503 to come),
/// promptly, and so does one under way when it went. Started again: the same backend serves again, with what had
/// committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_unavailable_then_recovers() -> Result<()> {
    let options = Options {
        max_connections: 2,
        connect_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let Some((mut pg, backend)) = fresh(&options).await? else {
        return Ok(());
    };
    backend
        .run(Mode::Write, |s| s.execute(INSERT_USER, &[&"alice"]))
        .await?;

    // A transaction under way when the server shuts down fails too.
    let in_flight = tokio::spawn({
        let backend = backend.clone();
        async move {
            backend
                .run(Mode::Read, |s| {
                    s.query_one("SELECT pg_sleep(30)", &[]).map(drop)
                })
                .await
        }
    });
    eventually(Duration::from_secs(5), || async {
        let sleeping: i64 = backend
            .run(Mode::Read, |s| {
                let sql =
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'";
                Ok::<_, StoreError>(s.query_one(sql, &[])?.get(0))
            })
            .await?;
        Ok((sleeping == 1).then_some(()))
    })
    .await?;
    pg.stop().await?;
    let Err(e) = in_flight.await? else {
        bail!("a transaction under way survived the shutdown");
    };
    assert!(e.is_unavailable(), "in flight: {e}");

    for mode in [Mode::Read, Mode::Write, Mode::Read] {
        let started = Instant::now();
        let down = backend
            .run(mode, |s| s.execute(INSERT_USER, &[&"bob"]))
            .await;
        let Err(e) = down else {
            bail!("{mode:?} succeeded with the database down");
        };
        assert!(e.is_unavailable(), "{mode:?}: {e}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{mode:?}: {:?}",
            started.elapsed()
        );
    }

    pg.start().await?;
    assert_eq!(count_users(&backend).await?, 1, "what committed is there");
    backend
        .run(Mode::Write, |s| s.execute(INSERT_USER, &[&"bob"]))
        .await?;
    assert_eq!(count_users(&backend).await?, 2);
    Ok(())
}
