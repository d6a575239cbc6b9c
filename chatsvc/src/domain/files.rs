//! Attachments: uploads stored content-addressed on disk, referenced by
//! messages, readable only by who can see such a message (or the uploader).
//!
//! An upload is streamed to a temporary file while its SHA-256 and size are
//! computed (the size limit is enforced as bytes arrive), its type is sniffed
//! from its first bytes (the client's Content-Type is not trusted), and it is
//! renamed to `files/<sha[0..2]>/<sha>`, so identical uploads share one
//! blob. Images get a thumbnail (at most 256 px on the longer side, PNG).
//! Uploads no message references are deleted after a while.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::files::{self as store, FileRow};

/// Longer side of a thumbnail, pixels.
const THUMBNAIL_SIZE: u32 = 256;
/// Images larger than this many pixels get no thumbnail (decompression bombs).
const MAX_THUMBNAIL_SOURCE_PIXELS: u64 = 40_000_000;

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

fn blob_path(dir: &Path, sha: &str) -> PathBuf {
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
            .ok_or_else(|| DomainError::Internal("no files directory configured".into()))
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
                || n.chars().any(|c| c.is_control() || c == '/' || c == '\\')
            {
                return Err(DomainError::Invalid(
                    "name must be 1-255 characters, no slashes or control characters".into(),
                ));
            }
        }
        let dir = self.files_dir()?.to_owned();
        let limit = self.limits.max_upload_bytes;
        let tmp = dir.join(format!("upload-{}", new_id()));
        let opened = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::File::create(&tmp).await
        }
        .await;
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => {
                drain(&mut body, limit).await;
                return Err(io(e));
            }
        };
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::with_capacity(8192);
        let result: Result<(), DomainError> = async {
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| DomainError::Invalid(format!("upload interrupted: {e}")))?;
                size += chunk.len() as u64;
                if size > limit {
                    drain(&mut body, limit).await;
                    return Err(DomainError::TooLarge(limit));
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
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        if size == 0 {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(DomainError::Invalid("empty upload".into()));
        }
        let sha: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let content_type = infer::get(&head)
            .map_or("application/octet-stream", |t| t.mime_type())
            .to_owned();
        let path = blob_path(&dir, &sha);
        tokio::fs::create_dir_all(path.parent().unwrap_or(&dir))
            .await
            .map_err(io)?;
        if tokio::fs::try_exists(&path).await.map_err(io)? {
            let _ = tokio::fs::remove_file(&tmp).await;
        } else {
            tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        }

        let now = now_ms();
        let mut row = FileRow {
            id: new_id(),
            sha256: sha,
            size,
            content_type: content_type.clone(),
            name,
            uploader_id: caller.user_id,
            created_at: now,
            thumbnail_id: None,
            width: None,
            height: None,
        };
        let mut thumbnail = None;
        if content_type.starts_with("image/") {
            let source = path.clone();
            let made = tokio::task::spawn_blocking(move || make_thumbnail(&source))
                .await
                .map_err(io_join)?;
            if let Some((w, h, png)) = made {
                row.width = Some(w);
                row.height = Some(h);
                let thumb_sha: String = Sha256::digest(&png)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let thumb_path = blob_path(&dir, &thumb_sha);
                tokio::fs::create_dir_all(thumb_path.parent().unwrap_or(&dir))
                    .await
                    .map_err(io)?;
                tokio::fs::write(&thumb_path, &png).await.map_err(io)?;
                let thumb = FileRow {
                    id: new_id(),
                    sha256: thumb_sha,
                    size: png.len() as u64,
                    content_type: "image/png".into(),
                    name: None,
                    uploader_id: caller.user_id,
                    created_at: now,
                    thumbnail_id: None,
                    width: None,
                    height: None,
                };
                row.thumbnail_id = Some(thumb.id.clone());
                thumbnail = Some(thumb);
            }
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
        metrics::counter!("files_uploaded_total").increment(1);
        Ok(row.into())
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
        c: &rusqlite::Connection,
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

fn io_join(e: tokio::task::JoinError) -> DomainError {
    DomainError::Internal(format!("thumbnail: {e}"))
}

/// Decodes an image and renders a PNG thumbnail; `None` if it can't be
/// decoded or is too large to decode safely.
fn make_thumbnail(path: &Path) -> Option<(u32, u32, Vec<u8>)> {
    let reader = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?;
    let (w, h) = reader.into_dimensions().ok()?;
    if u64::from(w) * u64::from(h) > MAX_THUMBNAIL_SOURCE_PIXELS {
        return None;
    }
    let img = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .decode()
        .ok()?;
    // Never enlarge: a small image is its own thumbnail.
    let thumb = if w <= THUMBNAIL_SIZE && h <= THUMBNAIL_SIZE {
        img
    } else {
        img.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    };
    let mut png = Vec::new();
    thumb
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .ok()?;
    Some((w, h, png))
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
