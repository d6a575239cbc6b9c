//! Strangers at the edge: sockets, WebSocket frames, `/metrics` labels.

use anyhow::Result;
use mqchat_e2e::TestServer;

/// The HTTP latency series in a scrape (one `_count` line per series), and
/// the scrape's size in bytes.
async fn latency_series(server: &TestServer) -> Result<(usize, usize)> {
    let body = server
        .http_client
        .get(server.url("/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let series = body
        .lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_count{"))
        .count();
    Ok((series, body.len()))
}

/// A pseudo-random token of `len` upper-case letters (made-up methods) or
/// lower-case ones (made-up paths), from a counter: no extra dependency.
fn token(seed: u64, len: usize, upper: bool) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = if upper { b'A' } else { b'a' };
            char::from(base + (x % 26) as u8)
        })
        .collect()
}

/// Thousands of requests with made-up methods on made-up paths (and on a
/// real route) add no series to `/metrics`: labels come from a closed set.
#[tokio::test]
async fn made_up_methods_and_paths_add_no_metric_series() -> Result<()> {
    let server = TestServer::start().await?;
    let client = &server.http_client;
    let send = |method: &str, path: &str| {
        let method = reqwest::Method::from_bytes(method.as_bytes());
        let url = server.url(path);
        async move { Ok::<_, anyhow::Error>(client.request(method?, url).send().await?.status()) }
    };
    // One of each shape first, so every series the flood can touch exists.
    send("GET", "/no/such/page").await?;
    send("BREW", "/no/such/page").await?;
    send("BREW", "/v1/messages").await?;
    send("GET", "/metrics").await?;
    let (series_before, size_before) = latency_series(&server).await?;

    let requests = 3000u64;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..requests {
        let method = token(i, 3 + (i % 8) as usize, true);
        let path = match i % 3 {
            0 => "/v1/messages".to_owned(),
            1 => format!("/{}", token(i + requests, 12, false)),
            _ => format!("/{}/{}", token(i, 5, false), token(i + 7, 9, false)),
        };
        let status = send(&method, &path).await?;
        *statuses.entry(status.as_u16()).or_insert(0u32) += 1;
    }
    let (series_after, size_after) = latency_series(&server).await?;
    eprintln!(
        "metrics: {requests} made-up requests ({statuses:?}): series {series_before} -> {series_after}, scrape {size_before} -> {size_after} bytes"
    );
    assert_eq!(
        series_after, series_before,
        "made-up methods and paths created series"
    );
    // Counts and sums grow by a few digits; new series would add ~1 KiB each.
    assert!(
        size_after < size_before + 1024,
        "scrape grew from {size_before} to {size_after} bytes"
    );
    Ok(())
}
