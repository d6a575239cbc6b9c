//! Attachments: uploads stored content-addressed on disk, referenced by
//! messages, readable only by who can see such a message (or the uploader).
//!
//! An upload is streamed to a temporary file while its SHA-256 and size are
//! computed (the size limit is enforced as bytes arrive), its type is sniffed
//! from its first bytes (the client's Content-Type is not trusted), and it is
//! renamed to `files/<sha[0..2]>/<sha>`, so identical uploads share one
//! blob. Images get a thumbnail (at most 256 px on the longer side, PNG).
//! Uploads no message references are deleted after a while.
//!
//! Each user has quotas of bytes uploaded per day and in total (thumbnails
//! included), checked before the upload is read, enforced as bytes arrive
//! and checked again before the upload is recorded, with every upload of
//! the user still in flight counted, so parallel uploads can't overshoot.
//! The temporary file belongs to a guard that deletes it however the
//! upload ends (refused, cut by the request timeout, client gone, disk
//! full); what a crash leaves is swept at start and periodically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::files::{self as store, FileRow};
use crate::store::Read;

/// Temporary files of uploads in progress are named with this prefix.
const TEMP_PREFIX: &str = "upload-";
/// A temporary file older than this belongs to no live upload (a request
/// is timed out after 30 s): the sweep deletes it.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(600);
/// The window of the daily quota.
const DAY_MS: i64 = 86_400_000;

/// Image types a browser may show inline and that can carry no script:
/// what an `image` reference may point at, what gets a thumbnail, and what
/// is downloaded inline. Never SVG (it is a document that runs scripts).
const SAFE_IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Is this sniffed content type an image safe to show inline?
pub fn is_safe_image(content_type: &str) -> bool {
    SAFE_IMAGE_TYPES.contains(&content_type)
}

/// An uploaded file, as returned by the upload and put in message bodies.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileInfo {
    pub id: String,
    pub size: u64,
    pub content_type: String,
    pub name: Option<String>,
    pub sha256: String,
    pub created_at: i64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumbnail_id: Option<String>,
}

impl From<FileRow> for FileInfo {
    fn from(r: FileRow) -> Self {
        FileInfo {
            id: r.id,
            size: r.size,
            content_type: r.content_type,
            name: r.name,
            sha256: r.sha256,
            created_at: r.created_at,
            width: r.width,
            height: r.height,
            thumbnail_id: r.thumbnail_id,
        }
    }
}

/// A file to send back.
#[derive(Debug)]
pub struct Download {
    pub info: FileInfo,
    pub path: PathBuf,
}

fn new_id() -> String {
    let mut raw = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// File ids are 32 lowercase hex characters; anything else is not a file
/// (and never reaches the file system).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(super) fn blob_path(dir: &Path, sha: &str) -> PathBuf {
    dir.join(&sha[..2]).join(sha)
}

/// Reads (and drops) up to `limit` more bytes of an upload that won't be
/// stored (too large, or the disk is full), so that a client still sending
/// sees the error answer rather than a reset connection; beyond that, stops
/// reading.
async fn drain<S, E>(body: &mut S, limit: u64)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut drained = 0u64;
    while let Some(Ok(rest)) = body.next().await {
        drained += rest.len() as u64;
        if drained > limit {
            break;
        }
    }
}

/// A full or read-only disk is a storage fault (503), like the database's;
/// anything else about the files directory is a bug.
fn io(e: std::io::Error) -> DomainError {
    crate::store::StoreError::File(e).into()
}

impl Chat {
    fn files_dir(&self) -> Result<&Path, DomainError> {
        self.files_dir
            .as_deref()
            .ok_or_else(|| DomainError::internal("no files directory configured"))
    }

    /// Streams an upload to disk and records it.
    pub async fn upload<S, E>(
        &self,
        caller: Caller,
        name: Option<String>,
        mut body: S,
    ) -> Result<FileInfo, DomainError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(n) = &name {
            if n.is_empty()
                || n.chars().count() > 255
                || n.contains(['/', '\\'])
                || super::names::hidden_character(n).is_some()
            {
                return Err(DomainError::Invalid(
                    "name must be 1-255 characters, no slashes, invisible, bidi or control characters".into(),
                ));
            }
        }
        let dir = self.files_dir()?.to_owned();
        let user = caller.user_id;
        let mut in_flight = self.uploads.reserve(user);
        // What the quotas leave for this upload, counting the user's other
        // uploads in flight; the limit on bytes read is the smaller of that
        // and the upload limit.
        let room = match self.quota_room(user, &in_flight, 1).await {
            Ok(room) => room,
            Err(e) => {
                drain(&mut body, self.limits.max_upload_bytes).await;
                return Err(e);
            }
        };
        let limit = self.limits.max_upload_bytes.min(room.bytes);
        let opened = async {
            tokio::fs::create_dir_all(&dir).await?;
            TempFile::create(&dir).await
        }
        .await;
        let (mut tmp, mut file) = match opened {
            Ok(f) => f,
            Err(e) => {
                drain(&mut body, limit).await;
                return Err(io(e));
            }
        };
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::with_capacity(8192);
        let mut refusal = (limit < self.limits.max_upload_bytes).then_some(room.refusal);
        let streamed: Result<(), DomainError> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| DomainError::Invalid(format!("upload interrupted: {e}")))?;
                size += chunk.len() as u64;
                in_flight.add(chunk.len() as u64);
                if size > limit {
                    drain(&mut body, limit).await;
                    return Err(refusal.take().unwrap_or(DomainError::TooLarge(limit)));
                }
                if head.len() < 8192 {
                    let take = (8192 - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(&chunk);
                if let Err(e) = file.write_all(&chunk).await {
                    drain(&mut body, limit).await;
                    return Err(io(e));
                }
            }
            file.sync_all().await.map_err(io)?;
            if size == 0 {
                return Err(DomainError::Invalid("empty upload".into()));
            }
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = streamed {
            // Gone before the refusal is answered, not just soon after.
            tmp.discard().await;
            return Err(e);
        }
        let sha = hex(&hasher.finalize());
        let content_type = infer::get(&head)
            .map_or("application/octet-stream", |t| t.mime_type())
            .to_owned();
        let now = now_ms();
        let mut row = FileRow {
            id: new_id(),
            sha256: sha,
            size,
            content_type: content_type.clone(),
            name,
            uploader_id: user,
            created_at: now,
            thumbnail_id: None,
            width: None,
            height: None,
        };
        let mut thumbnail = None;
        let mut thumb_tmp = None;
        if is_safe_image(&content_type) {
            if let Some(made) = self.decoders.make(tmp.path()?).await {
                row.width = Some(made.width);
                row.height = Some(made.height);
                in_flight.add(made.png.len() as u64);
                let thumb_sha = hex(&Sha256::digest(&made.png));
                let (t, mut file) = TempFile::create(&dir).await.map_err(io)?;
                file.write_all(&made.png).await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                drop(file);
                thumb_tmp = Some((t, blob_path(&dir, &thumb_sha)));
                let thumb = FileRow {
                    id: new_id(),
                    sha256: thumb_sha,
                    size: made.png.len() as u64,
                    content_type: "image/png".into(),
                    name: None,
                    uploader_id: user,
                    created_at: now,
                    thumbnail_id: None,
                    width: None,
                    height: None,
                };
                row.thumbnail_id = Some(thumb.id.clone());
                thumbnail = Some(thumb);
            }
        }
        // Again with what committed meanwhile (this upload counts as in
        // flight until it is recorded), before anything is kept.
        self.quota_room(user, &in_flight, 0).await?;
        tmp.persist(&blob_path(&dir, &row.sha256))
            .await
            .map_err(io)?;
        if let Some((mut t, path)) = thumb_tmp {
            t.persist(&path).await.map_err(io)?;
        }
        let stored = row.clone();
        self.store
            .write(move |c| {
                if let Some(t) = &thumbnail {
                    store::insert(c, t)?;
                }
                store::insert(c, &stored)
            })
            .await?;
        drop(in_flight);
        metrics::counter!(crate::metrics::FILES_UPLOADED_TOTAL).increment(1);
        Ok(row.into())
    }

    /// Bytes the user may still upload (`u64::MAX`: no quota), counting
    /// what is stored and every upload of the user in flight (`own`
    /// included); an error if less than `need` is left (1 before an
    /// upload: some room; 0 before recording one: not over).
    async fn quota_room(&self, user: u64, own: &InFlight, need: u64) -> Result<Room, DomainError> {
        let (daily, total) = (
            self.limits.upload_quota_daily_bytes,
            self.limits.upload_quota_total_bytes,
        );
        if daily == 0 && total == 0 {
            return Ok(Room::unlimited());
        }
        let now = now_ms();
        let usage = self
            .store
            .read(move |c| Ok::<_, DomainError>(store::usage(c, user, now - DAY_MS)?))
            .await?;
        let flying = own.user_total();
        let mut room = Room::unlimited();
        let mut over_total = false;
        let mut over_daily = false;
        if total > 0 {
            let left = total.checked_sub(usage.total + flying);
            over_total = left.is_none_or(|left| left < need);
            room = room.min(Room {
                bytes: left.unwrap_or(0),
                refusal: DomainError::UploadQuota {
                    limit: total,
                    retry_after: None,
                },
            });
        }
        if daily > 0 {
            let left = daily.checked_sub(usage.today + flying);
            over_daily = left.is_none_or(|left| left < need);
            // Room comes back as the oldest of today's uploads ages out.
            let wait = usage.oldest_today.map_or(Duration::from_secs(1), |at| {
                Duration::from_millis((at + DAY_MS - now).max(1000) as u64)
            });
            let daily_room = Room {
                bytes: left.unwrap_or(0),
                refusal: DomainError::UploadQuota {
                    limit: daily,
                    retry_after: Some(wait),
                },
            };
            // Refused by the daily quota alone: say when to retry.
            room = if over_daily && !over_total {
                daily_room
            } else {
                room.min(daily_room)
            };
        }
        if over_total || over_daily {
            return Err(room.refusal);
        }
        Ok(room)
    }

    /// Deletes temporary upload files older than `age` (none is in use:
    /// a request is timed out long before); returns how many. At start,
    /// with no upload in flight, `age` is zero.
    pub async fn sweep_stale_uploads(&self, age: Duration) -> Result<usize, DomainError> {
        let dir = self.files_dir()?.to_owned();
        tokio::task::spawn_blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(io(e)),
            };
            let mut removed = 0;
            for entry in entries.flatten() {
                let stale = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|at| at.elapsed().unwrap_or_default() >= age);
                if stale && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| DomainError::internal_from("sweeping uploads", e))?
    }

    /// A file the caller may read.
    pub async fn download(&self, caller: Caller, id: &str) -> Result<Download, DomainError> {
        if !valid_id(id) {
            return Err(DomainError::NotFound("file"));
        }
        let dir = self.files_dir()?.to_owned();
        let user = caller.user_id;
        let id = id.to_owned();
        let row = self
            .store
            .read(move |c| {
                if !store::may_read(c, user, &id)? {
                    return Err(DomainError::NotFound("file"));
                }
                store::by_id(c, &id)?.ok_or(DomainError::NotFound("file"))
            })
            .await?;
        let path = blob_path(&dir, &row.sha256);
        Ok(Download {
            info: row.into(),
            path,
        })
    }

    /// Checks that the files a message body references exist and that the
    /// sender may use them; returns their ids.
    pub(crate) fn referenced_files(
        c: &impl Read,
        sender: u64,
        body: &str,
    ) -> Result<Vec<String>, DomainError> {
        // Most bodies reference nothing: skip the parse on the writer thread.
        if !body.contains("\"file\"") && !body.contains("\"image\"") {
            return Ok(Vec::new());
        }
        let value: serde_json::Value =
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        let mut ids = Vec::new();
        for key in ["file", "image"] {
            let Some(obj) = value.get(key) else { continue };
            let id = obj
                .get("id")
                .and_then(|v| v.as_str())
                .filter(|id| valid_id(id))
                .ok_or_else(|| {
                    DomainError::Invalid(format!(
                        "body.{key}.id must be the id of an uploaded file"
                    ))
                })?;
            if !store::may_read(c, sender, id)? {
                return Err(DomainError::Invalid(format!("body.{key}.id: no such file")));
            }
            // The server, not the sender, decides how a file is shown: an
            // `image` is shown inline, so it must be one by its bytes.
            if key == "image" {
                let sniffed = store::content_type(c, id)?;
                if !sniffed.as_deref().is_some_and(is_safe_image) {
                    return Err(DomainError::Invalid(
                        "body.image.id is not a PNG, JPEG, GIF or WebP image; send it as body.file"
                            .into(),
                    ));
                }
            }
            ids.push(id.to_owned());
        }
        Ok(ids)
    }

    /// Deletes uploads no message references, older than `age`; returns how many.
    pub async fn clean_unreferenced_files(
        &self,
        age: std::time::Duration,
    ) -> Result<usize, DomainError> {
        let dir = self.files_dir()?.to_owned();
        let before = now_ms() - age.as_millis() as i64;
        let (deleted, unused) = self
            .store
            .write(move |c| {
                let deleted = store::delete_unreferenced(c, before)?;
                let mut unused = Vec::new();
                for (_, sha) in &deleted {
                    if !store::blob_in_use(c, sha)? {
                        unused.push(sha.clone());
                    }
                }
                Ok::<_, DomainError>((deleted.len(), unused))
            })
            .await?;
        for sha in unused {
            let _ = tokio::fs::remove_file(blob_path(&dir, &sha)).await;
        }
        Ok(deleted)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the quotas leave for an upload, and the answer once it is used up.
#[derive(Debug)]
struct Room {
    bytes: u64,
    refusal: DomainError,
}

impl Room {
    fn unlimited() -> Self {
        Room {
            bytes: u64::MAX,
            refusal: DomainError::TooLarge(u64::MAX),
        }
    }

    fn min(self, other: Room) -> Room {
        if other.bytes < self.bytes {
            other
        } else {
            self
        }
    }
}

/// Bytes of uploads in flight, per user: counted against the quotas until
/// the upload is recorded (or fails).
#[derive(Debug, Default)]
pub struct Uploads {
    in_flight: Mutex<HashMap<u64, u64>>,
}

impl Uploads {
    fn reserve(self: &Arc<Self>, user: u64) -> InFlight {
        InFlight {
            uploads: Arc::clone(self),
            user,
            bytes: 0,
        }
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<u64, u64>) -> T) -> T {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }
}

/// One upload's bytes in flight; released when dropped.
#[derive(Debug)]
struct InFlight {
    uploads: Arc<Uploads>,
    user: u64,
    bytes: u64,
}

impl InFlight {
    fn add(&mut self, n: u64) {
        self.bytes += n;
        self.uploads
            .with_map(|m| *m.entry(self.user).or_default() += n);
    }

    /// Every upload of this user in flight, this one included.
    fn user_total(&self) -> u64 {
        self.uploads
            .with_map(|m| m.get(&self.user).copied().unwrap_or(0))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let (user, bytes) = (self.user, self.bytes);
        self.uploads.with_map(|m| {
            if let Some(left) = m.get_mut(&user) {
                *left = left.saturating_sub(bytes);
                if *left == 0 {
                    m.remove(&user);
                }
            }
        });
    }
}

/// A temporary file that is deleted when dropped unless it was persisted:
/// every way an upload can end early (an error, a refusal, the request
/// timing out or the client going away, which drop the handler) leaves
/// nothing behind.
#[derive(Debug)]
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn path(&self) -> Result<&Path, DomainError> {
        self.path
            .as_deref()
            .ok_or_else(|| DomainError::internal("upload file already moved"))
    }

    async fn create(dir: &Path) -> std::io::Result<(TempFile, tokio::fs::File)> {
        let path = dir.join(format!("{TEMP_PREFIX}{}", new_id()));
        let file = tokio::fs::File::create(&path).await?;
        Ok((TempFile { path: Some(path) }, file))
    }

    /// Moves it to `to` (content-addressed: if `to` exists, it already has
    /// these bytes, and the temporary file is just deleted).
    async fn persist(&mut self, to: &Path) -> std::io::Result<()> {
        let Some(from) = self.path.take() else {
            return Ok(());
        };
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let moved = if tokio::fs::try_exists(to).await? {
            tokio::fs::remove_file(&from).await
        } else {
            tokio::fs::rename(&from, to).await
        };
        if moved.is_err() {
            self.path = Some(from);
        }
        moved
    }
}

impl TempFile {
    /// Deletes it now (what [`Drop`] does in the background).
    async fn discard(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = tokio::fs::remove_file(path).await;
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // An unlink is quick, but stays off the async workers when
            // there are any.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || std::fs::remove_file(path));
                }
                Err(_) => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_id;

    #[test]
    fn file_ids_are_strict() {
        assert!(valid_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde/",
            "0123456789abcdef",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
