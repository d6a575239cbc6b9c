//! PostgreSQL: [`crate::store::settings`].

use super::Session;
use crate::store::settings::SettingsRow;
use crate::store::StoreError;

pub fn get(c: &Session<'_>, user_id: u64, conversation_id: u64) -> Result<SettingsRow, StoreError> {
    Ok(c.query_opt(
        "SELECT s.muted_until, s.pinned_at, COALESCE(s.archived_seq >= c.last_seq, false)
             FROM conversation_settings s JOIN conversations c ON c.id = s.conversation_id
             WHERE s.user_id = $1 AND s.conversation_id = $2",
        &[&(user_id as i64), &(conversation_id as i64)],
    )?
    .map(|r| {
        Ok::<_, StoreError>(SettingsRow {
            muted_until: r.try_get(0)?,
            pinned_at: r.try_get(1)?,
            archived: r.try_get(2)?,
        })
    })
    .transpose()?
    .unwrap_or_default())
}

pub fn put(
    c: &Session<'_>,
    user_id: u64,
    conversation_id: u64,
    settings: &SettingsRow,
) -> Result<(), StoreError> {
    if *settings == SettingsRow::default() {
        c.execute(
            "DELETE FROM conversation_settings WHERE user_id = $1 AND conversation_id = $2",
            &[&(user_id as i64), &(conversation_id as i64)],
        )?;
        return Ok(());
    }
    c.execute(
        "INSERT INTO conversation_settings (user_id, conversation_id, muted_until, pinned_at, archived_seq)
         SELECT $1, $2, $3, $4, CASE WHEN $5 THEN c.last_seq END FROM conversations c WHERE c.id = $2
         ON CONFLICT (user_id, conversation_id) DO UPDATE
           SET muted_until = excluded.muted_until, pinned_at = excluded.pinned_at,
               archived_seq = excluded.archived_seq",
        &[
            &(user_id as i64),
            &(conversation_id as i64),
            &settings.muted_until,
            &settings.pinned_at,
            &settings.archived,
        ],
    )?;
    Ok(())
}

pub fn pinned_count(c: &Session<'_>, user_id: u64) -> Result<usize, StoreError> {
    let r = c.query_one(
        "SELECT COUNT(*) FROM conversation_settings WHERE user_id = $1 AND pinned_at IS NOT NULL",
        &[&(user_id as i64)],
    )?;
    Ok(r.try_get::<_, i64>(0)? as usize)
}
