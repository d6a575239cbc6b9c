//! SQLite: [`crate::store::files`].

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::files::{FileRow, Usage};
use crate::store::StoreError;

const COLUMNS: &str =
    "id, sha256, size, content_type, name, uploader_id, created_at, thumbnail_id, width, height";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        id: r.get(0)?,
        sha256: r.get(1)?,
        size: r.get(2)?,
        content_type: r.get(3)?,
        name: r.get(4)?,
        uploader_id: r.get(5)?,
        created_at: r.get(6)?,
        thumbnail_id: r.get(7)?,
        width: r.get(8)?,
        height: r.get(9)?,
    })
}

pub fn insert(c: &Connection, f: &FileRow) -> Result<(), StoreError> {
    c.execute(
        &format!("INSERT INTO files ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            f.id,
            f.sha256,
            f.size,
            f.content_type,
            f.name,
            f.uploader_id,
            f.created_at,
            f.thumbnail_id,
            f.width,
            f.height
        ],
    )?;
    Ok(())
}

pub fn by_id(c: &Connection, id: &str) -> Result<Option<FileRow>, StoreError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = ?1"))?
            .query_row([id], row)
            .optional()?,
    )
}

/// A user's uploads: in total and since `since` (one range of the
/// `files_by_uploader` index, which covers the query).
pub fn usage(c: &Connection, user: u64, since: i64) -> Result<Usage, StoreError> {
    Ok(c.prepare_cached(
        "SELECT COALESCE(SUM(size), 0),
                    COALESCE(SUM(CASE WHEN created_at >= ?2 THEN size END), 0),
                    MIN(CASE WHEN created_at >= ?2 THEN created_at END)
             FROM files WHERE uploader_id = ?1",
    )?
    .query_row(params![user, since], |r| {
        Ok(Usage {
            total: r.get(0)?,
            today: r.get(1)?,
            oldest_today: r.get(2)?,
        })
    })?)
}

/// A file's sniffed content type.
pub fn content_type(c: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT content_type FROM files WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}

/// Links a message to the files it references (and their thumbnails).
pub fn link(c: &Connection, message_id: u64, file_id: &str) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO message_files (message_id, file_id)
         SELECT ?1, id FROM files WHERE id = ?2 OR id = (SELECT thumbnail_id FROM files WHERE id = ?2)",
    )?
    .execute(params![message_id, file_id])?;
    Ok(())
}

/// May `user` download `file_id`? The uploader may; so may every member
/// who can see a message referencing it (joined before it, not recalled).
pub fn may_read(c: &Connection, user: u64, file_id: &str) -> Result<bool, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT 1 FROM files f WHERE f.id = ?2 AND f.uploader_id = ?1
             UNION ALL
             SELECT 1 FROM message_files mf
               JOIN messages m ON m.id = mf.message_id
               JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id = ?1
             WHERE mf.file_id = ?2 AND m.seq > cm.joined_seq AND m.recalled_at IS NULL
             LIMIT 1",
        )?
        .exists(params![user, file_id])?)
}

/// Uploads older than `before` that no message references (thumbnails go
/// with their image). Returns `(id, sha256)` of the rows deleted.
pub fn delete_unreferenced(
    c: &Connection,
    before: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "DELETE FROM files WHERE created_at < ?1
           AND NOT EXISTS (SELECT 1 FROM message_files mf WHERE mf.file_id = files.id)
         RETURNING id, sha256",
    )?;
    let rows = stmt
        .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Is a blob still used by any row?
pub fn blob_in_use(c: &Connection, sha256: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached("SELECT 1 FROM files WHERE sha256 = ?1")?
        .exists([sha256])?)
}
