//! SQLite: [`crate::store::mqtt`].

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::mqtt::{CursorsRow, OpenedRow};
use crate::store::StoreError;

pub fn open_mqtt_session(
    c: &Connection,
    user_id: u64,
    client_id: &str,
    clean_start: bool,
    expires_at: i64,
    now: i64,
    max_per_user: usize,
) -> Result<OpenedRow, StoreError> {
    let head = super::messages::inbox_head(c, user_id)?;
    let found: Option<(String, u64, u64, i64, i64)> = c
        .prepare_cached(
            "SELECT subscriptions, acked, sent, seen_at, expires_at FROM mqtt_sessions
             WHERE user_id = ?1 AND client_id = ?2",
        )?
        .query_row(params![user_id, client_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    if let Some((subscriptions, acked, sent, seen_at, expired_at)) = found {
        if !clean_start && expired_at > now {
            c.prepare_cached(
                "UPDATE mqtt_sessions SET seen_at = ?3, expires_at = ?4
                 WHERE user_id = ?1 AND client_id = ?2",
            )?
            .execute(params![user_id, client_id, now, expires_at])?;
            return Ok(OpenedRow {
                present: true,
                subscriptions,
                acked,
                sent,
                seen_at,
                head,
            });
        }
        end_mqtt_session(c, user_id, client_id)?;
    }
    if max_per_user > 0 {
        // The user's sessions past the cap, least recently seen first.
        c.prepare_cached(
            "DELETE FROM mqtt_sessions WHERE user_id = ?1 AND client_id IN (
                 SELECT client_id FROM mqtt_sessions WHERE user_id = ?1
                 ORDER BY seen_at DESC, client_id LIMIT -1 OFFSET ?2)",
        )?
        .execute(params![user_id, max_per_user.saturating_sub(1) as i64])?;
    }
    c.prepare_cached(
        "INSERT INTO mqtt_sessions (user_id, client_id, subscriptions, acked, sent, seen_at, expires_at)
         VALUES (?1, ?2, '[]', ?3, ?3, ?4, ?5)",
    )?
    .execute(params![user_id, client_id, head, now, expires_at])?;
    Ok(OpenedRow {
        present: false,
        subscriptions: "[]".to_owned(),
        acked: head,
        sent: head,
        seen_at: now,
        head,
    })
}

pub fn mqtt_session_exists(
    c: &Connection,
    user_id: u64,
    client_id: &str,
) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM mqtt_sessions WHERE user_id = ?1 AND client_id = ?2")?
            .exists(params![user_id, client_id])?,
    )
}

pub fn end_mqtt_session(c: &Connection, user_id: u64, client_id: &str) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("DELETE FROM mqtt_sessions WHERE user_id = ?1 AND client_id = ?2")?
            .execute(params![user_id, client_id])?
            > 0,
    )
}

pub fn save_mqtt_subscriptions(
    c: &Connection,
    user_id: u64,
    client_id: &str,
    subscriptions: &str,
    now: i64,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE mqtt_sessions SET subscriptions = ?3, seen_at = ?4
         WHERE user_id = ?1 AND client_id = ?2",
    )?
    .execute(params![user_id, client_id, subscriptions, now])?;
    Ok(())
}

pub fn save_mqtt_cursors(c: &Connection, rows: &[CursorsRow], now: i64) -> Result<(), StoreError> {
    let mut update = c.prepare_cached(
        "UPDATE mqtt_sessions SET acked = MAX(acked, ?3), sent = MAX(sent, ?4), seen_at = ?5, expires_at = ?6
         WHERE user_id = ?1 AND client_id = ?2",
    )?;
    for r in rows {
        update.execute(params![
            r.user_id,
            r.client_id,
            r.acked,
            r.sent,
            now,
            r.expires_at
        ])?;
    }
    Ok(())
}

pub fn purge_mqtt_sessions(c: &Connection, now: i64, limit: usize) -> Result<u64, StoreError> {
    Ok(c.prepare_cached(
        "DELETE FROM mqtt_sessions WHERE (user_id, client_id) IN (
                 SELECT user_id, client_id FROM mqtt_sessions WHERE expires_at <= ?1 LIMIT ?2)",
    )?
    .execute(params![now, limit as i64])? as u64)
}
