//! Attachment records. The bytes are on disk (see `domain::files`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: String,
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub name: Option<String>,
    pub uploader_id: u64,
    pub created_at: i64,
    pub thumbnail_id: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// What a user has uploaded (thumbnails of their images included).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Bytes of all their uploads still stored.
    pub total: u64,
    /// Bytes uploaded since `since`.
    pub today: u64,
    /// When the oldest upload since `since` was made.
    pub oldest_today: Option<i64>,
}

super::operations! {
    files;
    write fn insert(f: &FileRow) -> ();
    read fn by_id(id: &str) -> Option<FileRow>;
    /// A user's uploads: in total and since `since` (one range of the
    /// `files_by_uploader` index, which covers the query).
    read fn usage(user: u64, since: i64) -> Usage;
    /// A file's sniffed content type.
    read fn content_type(id: &str) -> Option<String>;
    /// Links a message to the files it references (and their thumbnails).
    write fn link(message_id: u64, file_id: &str) -> ();
    /// May `user` download `file_id`? The uploader may; so may every member
    /// who can see a message referencing it (joined before it, not recalled).
    read fn may_read(user: u64, file_id: &str) -> bool;
    /// Uploads older than `before` that no message references (thumbnails go
    /// with their image). Returns `(id, sha256)` of the rows deleted.
    write fn delete_unreferenced(before: i64) -> Vec<(String, String)>;
    /// Is a blob still used by any row?
    read fn blob_in_use(sha256: &str) -> bool;
}
