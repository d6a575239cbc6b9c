//! PostgreSQL: [`crate::store::files`].

use tokio_postgres::Row;

use super::Session;
use crate::store::files::{FileRow, Usage};
use crate::store::StoreError;

const COLUMNS: &str =
    "id, sha256, size, content_type, name, uploader_id, created_at, thumbnail_id, width, height";

fn row(r: &Row) -> FileRow {
    FileRow {
        id: r.get(0),
        sha256: r.get(1),
        size: r.get::<_, i64>(2) as u64,
        content_type: r.get(3),
        name: r.get(4),
        uploader_id: r.get::<_, i64>(5) as u64,
        created_at: r.get(6),
        thumbnail_id: r.get(7),
        width: r.get::<_, Option<i32>>(8).map(|w| w as u32),
        height: r.get::<_, Option<i32>>(9).map(|h| h as u32),
    }
}

pub fn insert(c: &Session<'_>, f: &FileRow) -> Result<(), StoreError> {
    // `integer` holds every width and height: the image decoder refuses
    // images past its limits, far below 2^31 pixels a side.
    let width = f.width.map(|w| w as i32);
    let height = f.height.map(|h| h as i32);
    c.execute(
        &format!("INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &f.id,
            &f.sha256,
            &(f.size as i64),
            &f.content_type,
            &f.name,
            &(f.uploader_id as i64),
            &f.created_at,
            &f.thumbnail_id,
            &width,
            &height,
        ],
    )?;
    Ok(())
}

pub fn by_id(c: &Session<'_>, id: &str) -> Result<Option<FileRow>, StoreError> {
    Ok(c.query_opt(
        &format!("SELECT {COLUMNS} FROM files WHERE id = $1"),
        &[&id],
    )?
    .map(|r| row(&r)))
}

/// A user's uploads: in total and since `since` (one range of the
/// `files_by_uploader` index, which covers the query).
pub fn usage(c: &Session<'_>, user: u64, since: i64) -> Result<Usage, StoreError> {
    // SUM of bigint is numeric in PostgreSQL: cast back.
    let r = c.query_one(
        "SELECT COALESCE(SUM(size), 0)::bigint,
                COALESCE(SUM(CASE WHEN created_at >= $2 THEN size END), 0)::bigint,
                MIN(CASE WHEN created_at >= $2 THEN created_at END)
         FROM files WHERE uploader_id = $1",
        &[&(user as i64), &since],
    )?;
    Ok(Usage {
        total: r.get::<_, i64>(0) as u64,
        today: r.get::<_, i64>(1) as u64,
        oldest_today: r.get(2),
    })
}

/// A file's sniffed content type.
pub fn content_type(c: &Session<'_>, id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.query_opt("SELECT content_type FROM files WHERE id = $1", &[&id])?
            .map(|r| r.get(0)),
    )
}

/// Links a message to the files it references (and their thumbnails).
pub fn link(c: &Session<'_>, message_id: u64, file_id: &str) -> Result<(), StoreError> {
    // ON CONFLICT for SQLite's INSERT OR IGNORE: a link already made stays.
    c.execute(
        "INSERT INTO message_files (message_id, file_id)
         SELECT $1::bigint, id FROM files
         WHERE id = $2 OR id = (SELECT thumbnail_id FROM files WHERE id = $2)
         ON CONFLICT DO NOTHING",
        &[&(message_id as i64), &file_id],
    )?;
    Ok(())
}

/// May `user` download `file_id`? The uploader may; so may every member
/// who can see a message referencing it (joined before it, not recalled).
pub fn may_read(c: &Session<'_>, user: u64, file_id: &str) -> Result<bool, StoreError> {
    Ok(c.query_one(
        "SELECT EXISTS (
             SELECT 1 FROM files f WHERE f.id = $2 AND f.uploader_id = $1
             UNION ALL
             SELECT 1 FROM message_files mf
               JOIN messages m ON m.id = mf.message_id
               JOIN conversation_members cm
                 ON cm.conversation_id = m.conversation_id AND cm.user_id = $1
             WHERE mf.file_id = $2 AND m.seq > cm.joined_seq AND m.recalled_at IS NULL
         )",
        &[&(user as i64), &file_id],
    )?
    .get(0))
}

/// Uploads older than `before` that no message references (thumbnails go
/// with their image). Returns `(id, sha256)` of the rows deleted.
pub fn delete_unreferenced(
    c: &Session<'_>,
    before: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    // RETURNING has no order of its own; the closest to SQLite's (rowid,
    // that is upload order) is by upload time.
    let rows = c.query(
        "WITH deleted AS (
             DELETE FROM files WHERE created_at < $1
               AND NOT EXISTS (SELECT 1 FROM message_files mf WHERE mf.file_id = files.id)
             RETURNING id, sha256, created_at
         )
         SELECT id, sha256 FROM deleted ORDER BY created_at, id",
        &[&before],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Is a blob still used by any row?
pub fn blob_in_use(c: &Session<'_>, sha256: &str) -> Result<bool, StoreError> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = $1)",
        &[&sha256],
    )?
    .get(0))
}
