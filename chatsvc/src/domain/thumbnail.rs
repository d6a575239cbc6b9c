//! Thumbnails, made within a memory budget. A small compressed file can
//! decode to hundreds of megabytes (a 300 KB PNG of 6300×6300 16-bit pixels
//! is 238 MB decoded), so the decoded size is read from the header first
//! (width × height × bytes per pixel), and decodes run only while their
//! sizes together fit in the budget, at most one per core. An image that
//! can never fit, or that waits too long for room, gets no thumbnail; the
//! upload itself still succeeds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use image::ImageDecoder;
use tokio::sync::Semaphore;

/// Longer side of a thumbnail, pixels.
const THUMBNAIL_SIZE: u32 = 256;
/// Images larger than this many pixels get no thumbnail, whatever their
/// bytes per pixel (decoding time grows with pixels too).
const MAX_SOURCE_PIXELS: u64 = 40_000_000;
/// Longest an upload waits for room in the budget before going without a
/// thumbnail: well inside the request timeout.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// The budget is counted in units of this many bytes.
const UNIT: u64 = 1 << 20;

/// A thumbnail and the source image's dimensions.
#[derive(Debug)]
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    pub png: Vec<u8>,
}

/// The memory and threads thumbnail decoding may use, shared by all uploads.
#[derive(Debug)]
pub struct Decoders {
    /// The budget, in [`UNIT`]s.
    memory: Arc<Semaphore>,
    memory_units: u32,
    /// One decode per core: more only queue for the CPU while holding memory.
    slots: Arc<Semaphore>,
}

impl Decoders {
    /// Decodes using at most `budget_bytes` together.
    pub fn new(budget_bytes: u64) -> Self {
        let memory_units = u32::try_from(budget_bytes / UNIT)
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Decoders {
            memory: Arc::new(Semaphore::new(memory_units as usize)),
            memory_units,
            slots: Arc::new(Semaphore::new(cores)),
        }
    }

    /// A thumbnail of the image at `path`, or `None`: not decodable, too
    /// large for the budget, or no room in time.
    pub async fn make(&self, path: &Path) -> Option<Thumbnail> {
        let probe_path = path.to_owned();
        let (w, h, bytes) = tokio::task::spawn_blocking(move || decoded_size(&probe_path))
            .await
            .ok()??;
        if u64::from(w) * u64::from(h) > MAX_SOURCE_PIXELS {
            return None;
        }
        let units = u32::try_from(bytes.div_ceil(UNIT)).ok()?.max(1);
        if units > self.memory_units {
            metrics::counter!(crate::metrics::THUMBNAILS_SKIPPED_TOTAL, "reason" => crate::metrics::SKIPPED_TOO_LARGE).increment(1);
            return None;
        }
        let permits = tokio::time::timeout(MAX_WAIT, async {
            let memory = self.memory.clone().acquire_many_owned(units).await.ok()?;
            let slot = self.slots.clone().acquire_owned().await.ok()?;
            Some((memory, slot))
        })
        .await;
        let Ok(Some(permits)) = permits else {
            metrics::counter!(crate::metrics::THUMBNAILS_SKIPPED_TOTAL, "reason" => crate::metrics::SKIPPED_BUSY).increment(1);
            return None;
        };
        let source: PathBuf = path.to_owned();
        let max_alloc = u64::from(units) * UNIT;
        tokio::task::spawn_blocking(move || {
            // Held until the decode's memory is freed.
            let _permits = permits;
            render(&source, w, h, max_alloc)
        })
        .await
        .ok()?
    }
}

fn reader(path: &Path) -> Option<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()
}

/// Width, height and decoded size in bytes, from the header alone.
fn decoded_size(path: &Path) -> Option<(u32, u32, u64)> {
    let decoder = reader(path)?.into_decoder().ok()?;
    let (w, h) = decoder.dimensions();
    Some((w, h, decoder.total_bytes()))
}

/// Decodes (allocating at most `max_alloc`) and renders the PNG thumbnail.
fn render(path: &Path, w: u32, h: u32, max_alloc: u64) -> Option<Thumbnail> {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    let mut reader = reader(path)?;
    reader.limits(limits);
    let img = reader.decode().ok()?;
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
    Some(Thumbnail {
        width: w,
        height: h,
        png,
    })
}
