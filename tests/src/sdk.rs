//! Helpers for tests of the Rust SDK's event stream.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use mqchat_sdk::{Backoff, Event, EventStream, StreamOptions};

/// Receives `n` message events; fails on a gap, a duplicate or a timeout.
pub async fn take(
    stream: &mut EventStream,
    n: usize,
    mut expect_cursor: u64,
) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    while texts.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(15), stream.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "stream stalled after {} events (cursor {})",
                    texts.len(),
                    stream.last_cursor()
                )
            })?
            .ok_or_else(|| anyhow!("stream ended"))??;
        match event {
            Event::MessageCreated {
                cursor, message, ..
            } => {
                if cursor != expect_cursor + 1 {
                    bail!("expected cursor {}, got {cursor}", expect_cursor + 1);
                }
                expect_cursor = cursor;
                texts.push(message.text().unwrap_or_default().to_owned());
            }
            other => bail!("unexpected event {other:?}"),
        }
    }
    Ok(texts)
}

/// Stream options that reconnect within half a second, for tests that
/// stop servers.
pub fn fast_reconnect() -> StreamOptions {
    StreamOptions::default().reconnect_backoff(Backoff::new(
        Duration::from_millis(100),
        Duration::from_millis(500),
    ))
}
