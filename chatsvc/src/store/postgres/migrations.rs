//! Versioned schema migrations, tracked in `schema_migrations`, applied by
//! whichever chatd gets the migration lock first.

use tokio_postgres::{Client, NoTls};

use crate::store::StoreError;

/// `(version, SQL)`, in increasing order from 1; each moves the schema
/// from the one before to `version`. Never edit a released entry; add a
/// file and an entry.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0001_initial.sql"
        )),
    ),
    (
        2,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0002_shared_work.sql"
        )),
    ),
    (
        3,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0003_mqtt_sessions.sql"
        )),
    ),
    (
        4,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0004_hot_rows_without_foreign_keys.sql"
        )),
    ),
    (
        5,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0005_reactions_pins_settings.sql"
        )),
    ),
    (
        6,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0006_message_expiry.sql"
        )),
    ),
    (
        7,
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0007_replies.sql"
        )),
    ),
];

/// The schema version this build migrates to, and the newest it runs on.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Every version a fully migrated database has applied, in order.
pub fn versions() -> Vec<i32> {
    MIGRATIONS.iter().map(|(v, _)| *v).collect()
}

/// The session-level advisory lock held while migrating ("mqchatdb" in
/// ASCII): nodes that start together take turns, and the second finds the
/// work done. One key for every mqchat database of a cluster: they migrate
/// one after another, which costs nothing worth a key per database.
const MIGRATION_LOCK: i64 = 0x6d71_6368_6174_6462;

/// Brings the database at `config` to [`SCHEMA_VERSION`], one transaction
/// per version, on a connection of its own that is closed afterwards (so a
/// lock it still held after a failure goes with it).
pub(super) async fn migrate(config: &tokio_postgres::Config) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres: migration connection closed");
        }
    });
    let result = migrate_locked(&mut client).await;
    drop(client);
    // Wait for the session to end, so a failed migration's lock is gone
    // before the caller hears of it (and may retry).
    let _ = connection.await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<(), StoreError> {
    // A migration of a large table, and the wait for another node's, may
    // take longer than any one request's statement may.
    client.batch_execute("SET statement_timeout = 0").await?;
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?
        .get(0);
    if !free {
        tracing::info!("postgres: another chatd is migrating the schema; waiting for it");
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let current: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Migration(format!(
            "database is at schema version {current}, newer than this chatd ({SCHEMA_VERSION}); refusing to run"
        )));
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Migration(format!("step {version}: {}", StoreError::from(e)))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "postgres schema migrated");
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions.first(), Some(&1));
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions.last(), Some(&SCHEMA_VERSION));
        assert!(MIGRATIONS.iter().all(|(_, sql)| !sql.trim().is_empty()));
    }
}
