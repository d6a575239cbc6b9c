//! SQLite: [`crate::store::settings`].

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::settings::SettingsRow;
use crate::store::StoreError;

pub fn get(c: &Connection, user_id: u64, conversation_id: u64) -> Result<SettingsRow, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT s.muted_until, s.pinned_at,
                    COALESCE(s.archived_seq >= (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?2), 0)
             FROM conversation_settings s WHERE s.user_id = ?1 AND s.conversation_id = ?2",
        )?
        .query_row(params![user_id, conversation_id], |r| {
            Ok(SettingsRow {
                muted_until: r.get(0)?,
                pinned_at: r.get(1)?,
                archived: r.get(2)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

pub fn put(
    c: &Connection,
    user_id: u64,
    conversation_id: u64,
    settings: &SettingsRow,
) -> Result<(), StoreError> {
    if *settings == SettingsRow::default() {
        c.prepare_cached(
            "DELETE FROM conversation_settings WHERE user_id = ?1 AND conversation_id = ?2",
        )?
        .execute(params![user_id, conversation_id])?;
        return Ok(());
    }
    c.prepare_cached(
        "INSERT INTO conversation_settings (user_id, conversation_id, muted_until, pinned_at, archived_seq)
         VALUES (?1, ?2, ?3, ?4,
                 CASE WHEN ?5 THEN (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?2) END)
         ON CONFLICT (user_id, conversation_id) DO UPDATE
           SET muted_until = excluded.muted_until, pinned_at = excluded.pinned_at,
               archived_seq = excluded.archived_seq",
    )?
    .execute(params![
        user_id,
        conversation_id,
        settings.muted_until,
        settings.pinned_at,
        settings.archived
    ])?;
    Ok(())
}

pub fn pinned_count(c: &Connection, user_id: u64) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(
        "SELECT COUNT(*) FROM conversation_settings WHERE user_id = ?1 AND pinned_at IS NOT NULL",
    )?
    .query_row([user_id], |r| r.get(0))?)
}
