//! Strangers at the edge: sockets, WebSocket frames, `/metrics` labels.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use mqchat_e2e::{connect_from, TestServer, TestUser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A second address on loopback: the stranger's, when the well-behaved
/// users (127.0.0.1) must not share its per-address caps.
const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// The HTTP latency series in a scrape (one `_count` line per series), and
/// the scrape's size in bytes.
async fn latency_series(server: &TestServer) -> Result<(usize, usize)> {
    let body = server.scrape_metrics().await?;
    let series = body
        .lines()
        .filter(|l| l.starts_with("mqchat_http_request_duration_seconds_count{"))
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

/// A well-behaved pair, during or right after an attack: `alice` and `bob`
/// (new names on each call) log in, `bob`
/// connects over MQTT (TCP, or WebSocket when `ws`), `alice` sends and bob
/// gets the push; every step within `within`.
async fn still_served(server: &TestServer, ws: bool, within: Duration) -> Result<Duration> {
    static PAIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let pair = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let step = |what: &'static str| move |_| anyhow!("{what} took longer than {within:?}");
    let (alice, bob): (TestUser, TestUser) = tokio::time::timeout(within, async {
        let alice = server.user(&format!("alice{pair}")).await?;
        Ok::<_, anyhow::Error>((alice, server.user(&format!("bob{pair}")).await?))
    })
    .await
    .map_err(step("log in"))??;
    let connect = async {
        if ws {
            server.mqtt_ws(&bob).await
        } else {
            server.mqtt(&bob).await
        }
    };
    let mut mqtt = tokio::time::timeout(within, connect)
        .await
        .map_err(step("MQTT CONNECT"))??;
    let (status, _) = alice.send_text(bob.id, "still-served", "hello").await?;
    if status != 201 {
        bail!("send answered {status}");
    }
    let event = mqtt
        .next_of_type("message.created", within)
        .await?
        .ok_or_else(|| anyhow!("no push within {within:?}"))?;
    assert_eq!(event["message"]["client_msg_id"], "still-served");
    Ok(started.elapsed())
}

/// Holds `sock` open, dribbling one header line (or one byte of a CONNECT)
/// every `every` when `dribble` is given; returns when the server closes it,
/// with how long that took.
async fn held_until_closed(mut sock: TcpStream, dribble: Option<&'static [u8]>) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let mut next = 0;
    loop {
        tokio::select! {
            read = sock.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(1)), if dribble.is_some() => {
                let bytes = dribble.unwrap_or_default();
                let piece = &bytes[next % bytes.len().max(1)..][..1.min(bytes.len())];
                next += 1;
                if sock.write_all(piece).await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

/// Waits until the server has closed every socket of `held` (see
/// [`held_until_closed`]), at most `within`; how long each lived, shortest
/// first.
async fn all_closed(
    held: Vec<tokio::task::JoinHandle<Duration>>,
    within: Duration,
) -> Result<Vec<Duration>> {
    let closed = tokio::time::timeout(within, futures_util::future::join_all(held))
        .await
        .map_err(|_| anyhow!("sockets still open after {within:?}"))?;
    let mut times = closed.into_iter().collect::<Result<Vec<_>, _>>()?;
    times.sort();
    Ok(times)
}

/// Slowloris on HTTP: under a 1,024 open-files limit, a stranger opens
/// 1,100 sockets to the HTTP port, half saying nothing, half dribbling a
/// request head one byte a second. Before: each held minutes, and once the
/// descriptors were gone nobody could log in or connect. Now the address
/// gets 512 (the rest are closed at accept), those are closed by the header
/// timeout, and a well-behaved pair is served meanwhile.
#[tokio::test]
async fn http_slowloris_can_not_take_every_socket() -> Result<()> {
    let server = TestServer::start().await?;
    server.limit_open_files(1024)?;
    let mut held = Vec::new();
    for i in 0..1100 {
        let mut sock = connect_from(STRANGER, server.http).await?;
        let dribble: Option<&'static [u8]> = if i % 2 == 0 {
            None
        } else {
            sock.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
            Some(b"X-Slow: yes\r\n")
        };
        held.push(tokio::spawn(held_until_closed(sock, dribble)));
    }
    let took = still_served(&server, false, Duration::from_secs(5)).await?;
    eprintln!("slowloris: a well-behaved pair served in {took:?}");

    // Every stranger's socket is closed: refused at once past the cap, the
    // others by the 10 s header timeout.
    let times = all_closed(held, Duration::from_secs(20)).await?;
    let refused = times
        .iter()
        .filter(|t| **t < Duration::from_secs(5))
        .count();
    let last = times.last().copied().unwrap_or_default();
    eprintln!("slowloris: {refused} refused at once, the rest closed by {last:?}");
    assert!(
        refused >= 1100 - 512,
        "only {refused} refused past the per-address cap"
    );
    assert!(
        last < Duration::from_secs(14),
        "a slow socket lived {last:?}"
    );
    Ok(())
}

/// Sockets that never finish a CONNECT: 400 from the well-behaved users'
/// own address (an office NAT) against 300 connection slots, half silent,
/// half dribbling a CONNECT a byte a second. Before: they held every slot
/// for 10 s each and nobody connected. Now an address keeps at most 256
/// unauthenticated connections (the oldest make room), each for at most
/// 5 s, and a well-behaved user connects at once.
#[tokio::test]
async fn mqtt_sockets_that_never_connect_can_not_hold_the_slots() -> Result<()> {
    let server = TestServer::start_with(&["--max-connections", "300"]).await?;
    let mut held = Vec::new();
    for i in 0..400 {
        let sock = TcpStream::connect(server.mqtt).await?;
        let dribble: Option<&'static [u8]> =
            (i % 2 == 1).then_some(&[0x10, 0x7f, 0, 4, b'M', b'Q', b'T', b'T'][..]);
        held.push(tokio::spawn(held_until_closed(sock, dribble)));
    }
    let took = still_served(&server, false, Duration::from_secs(3)).await?;
    eprintln!("pre-CONNECT flood: a well-behaved pair served in {took:?}");
    let times = all_closed(held, Duration::from_secs(30)).await?;
    let last = times.last().copied().unwrap_or_default();
    let evicted = times
        .iter()
        .filter(|t| **t < Duration::from_secs(2))
        .count();
    eprintln!("pre-CONNECT flood: {evicted} closed within 2 s (evicted), the last after {last:?}");
    assert!(
        last < Duration::from_secs(8),
        "a socket without CONNECT lived {last:?}"
    );
    Ok(())
}

/// One user opens connection after connection against 40 slots. Before:
/// it took all 40 and another user could not connect. Now its 33rd is
/// refused with a CONNACK (3.1.1: 0x03), a client id it already has still
/// takes that connection over, and another user connects and is served.
#[tokio::test]
async fn one_user_can_not_hold_every_mqtt_slot() -> Result<()> {
    let server = TestServer::start_with(&["--max-connections", "40"]).await?;
    let greedy = server.user("greedy").await?;
    let (_phone, code) = raw_connect(&server, &greedy, "phone").await?;
    assert_eq!(code, 0, "first connection");
    let mut kept = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..40 {
        match tokio::time::timeout(Duration::from_secs(3), server.mqtt(&greedy)).await {
            Ok(Ok(c)) => kept.push(c),
            Ok(Err(e)) => refusals.push(e.to_string()),
            Err(_) => refusals.push("no CONNACK within 3 s".to_owned()),
        }
    }
    eprintln!(
        "greedy user: {} more connected, {} refused: {:?}",
        kept.len(),
        refusals.len(),
        refusals.first()
    );
    assert_eq!(kept.len() + 1, 32, "connections of one user");
    assert!(
        refusals.iter().all(|r| r.contains("ServiceUnavailable")),
        "refusals: {refusals:?}"
    );
    let (_tablet, code) = raw_connect(&server, &greedy, "tablet").await?;
    assert_eq!(code, 0x03, "a new client id past the cap");
    let (_phone_again, code) = raw_connect(&server, &greedy, "phone").await?;
    assert_eq!(code, 0, "the phone's client id takes its connection over");

    let took = still_served(&server, false, Duration::from_secs(3)).await?;
    eprintln!("greedy user: another pair served in {took:?}");
    Ok(())
}

/// An MQTT 3.1.1 CONNECT on a raw socket; the socket and the CONNACK's code.
async fn raw_connect(
    server: &TestServer,
    user: &TestUser,
    client_id: &str,
) -> Result<(TcpStream, u8)> {
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&mqchat_e2e::raw::connect(4, client_id, user, 30))
        .await?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(3), sock.read_exact(&mut ack))
        .await
        .map_err(|_| anyhow!("no CONNACK for {client_id} within 3 s"))??;
    Ok((sock, ack[3]))
}

/// WebSocket upgrades that each start a 16 MiB frame and send 8 MiB of
/// it, before any CONNECT. Before: tungstenite buffered every frame (RSS
/// grew by hundreds of MB, held until the CONNECT timeout). Now a frame
/// may be no larger than the largest MQTT packet: the connection is closed
/// on the frame's header, and a well-behaved user connects over WebSocket.
#[tokio::test]
async fn oversized_websocket_frames_are_refused_unbuffered() -> Result<()> {
    let server = TestServer::start().await?;
    // A well-behaved WebSocket client first, so the RSS baseline includes
    // what serving one costs.
    still_served(&server, true, Duration::from_secs(5)).await?;
    let before = server.rss_bytes()?;
    let upgrades = 32;
    let mut sent = Vec::new();
    for _ in 0..upgrades {
        sent.push(tokio::spawn(oversized_frame(
            server.http,
            16 << 20,
            8 << 20,
        )));
    }
    let (socks, grown) = rss_growth_until_done(
        &server,
        before,
        sent,
        &format!("ws frames: {upgrades} upgrades x 8 MiB of a 16 MiB frame"),
    )
    .await?;
    assert!(grown < 24 << 20, "RSS grew by {} MiB", grown >> 20);
    drop(socks);
    let took = still_served(&server, true, Duration::from_secs(5)).await?;
    eprintln!("ws frames: a well-behaved pair served in {took:?}");
    Ok(())
}

/// Upgrades `/mqtt` to a WebSocket, then sends the header of a binary
/// frame of `declared` bytes and `sent` bytes of it (or as many as the
/// server takes before it closes). Returns the socket, still open.
async fn oversized_frame(
    http: std::net::SocketAddr,
    declared: u64,
    sent: usize,
) -> Result<TcpStream> {
    let mut sock = TcpStream::connect(http).await?;
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    sock.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if sock.read(&mut byte).await? == 0 {
            bail!("closed during the upgrade");
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("upgrade refused: {}", String::from_utf8_lossy(&head));
    }
    // FIN + binary, masked, 64-bit length, a zero mask (payload as sent).
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&declared.to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    let chunk = vec![0u8; 64 * 1024];
    if sock.write_all(&frame).await.is_ok() {
        for _ in 0..sent / chunk.len() {
            if sock.write_all(&chunk).await.is_err() {
                break;
            }
        }
    }
    Ok(sock)
}

/// A keep-alive connection between requests is timed by the idle timeout,
/// not the header one: with a 1 s header timeout and a 3 s idle timeout, a
/// connection that made one request is still open after the header timeout
/// and closed by the idle one. (Before: neither existed; such a connection
/// stayed open for good.)
#[tokio::test]
async fn keep_alive_connections_are_closed_by_the_idle_timeout() -> Result<()> {
    let server =
        TestServer::start_with(&["--http-header-timeout", "1", "--http-idle-timeout", "3"]).await?;
    let mut sock = TcpStream::connect(server.http).await?;
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: chatd\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&response).contains("\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            bail!("closed before the response");
        }
        response.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    let closed = held_until_closed(sock, None).await;
    let idle = answered.elapsed();
    eprintln!("keep-alive: closed {idle:?} after the response ({closed:?} of waiting)");
    assert!(
        idle >= Duration::from_millis(2500),
        "closed after {idle:?}: not by the idle timeout"
    );
    assert!(idle < Duration::from_secs(6), "still open after {idle:?}");
    Ok(())
}

/// 300 connections from one stranger, each sending 300 KB of request head
/// (header lines of 1 KB) and never finishing it. Before: hyper buffered up
/// to ~408 KB of head per connection until it came. Now a connection's
/// buffer is 64 KiB: past that the head is refused (431) and the connection
/// closed, and chatd's RSS grows by little.
#[tokio::test]
async fn huge_unfinished_request_heads_are_not_buffered() -> Result<()> {
    let server = TestServer::start().await?;
    let before = server.rss_bytes()?;
    let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
    let mut sending = Vec::new();
    for _ in 0..300 {
        let mut sock = connect_from(STRANGER, server.http).await?;
        let line = line.clone();
        sending.push(tokio::spawn(async move {
            if sock.write_all(b"GET /healthz HTTP/1.1\r\n").await.is_ok() {
                for _ in 0..300 {
                    if sock.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
            Ok(sock)
        }));
    }
    let (socks, grown) = rss_growth_until_done(
        &server,
        before,
        sending,
        "huge heads: 300 x 300 KB unfinished",
    )
    .await?;
    assert!(grown < 32 << 20, "RSS grew by {} MiB", grown >> 20);
    drop(socks);
    still_served(&server, false, Duration::from_secs(5)).await?;
    Ok(())
}

/// Waits for every attacking task, reading chatd's RSS as each ends; the
/// sockets they leave open, and the peak growth over `before` (logged).
async fn rss_growth_until_done(
    server: &TestServer,
    before: u64,
    attackers: Vec<tokio::task::JoinHandle<Result<TcpStream>>>,
    what: &str,
) -> Result<(Vec<TcpStream>, u64)> {
    let mut socks = Vec::new();
    let mut peak = before;
    for attacker in attackers {
        socks.push(attacker.await??);
        peak = peak.max(server.rss_bytes()?);
    }
    peak = peak.max(server.rss_bytes()?);
    let grown = peak.saturating_sub(before);
    eprintln!(
        "{what}: RSS {} -> peak {} MiB (+{} KiB)",
        before >> 20,
        peak >> 20,
        grown >> 10
    );
    Ok((socks, grown))
}
