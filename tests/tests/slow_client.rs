//! Slow and stuck subscribers: a client that stops reading while messages
//! pour in costs the server a bounded amount of memory, does not slow down
//! anybody else's pushes, and is disconnected (then catches up by sync).
//!
//! Stuck clients here are raw sockets that send CONNECT and SUBSCRIBE and
//! never read again (at QoS 0 and QoS 1, keep-alive off so only the
//! server's own bounds can end them), and a rumqttc client whose event loop
//! is no longer polled.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use mqchat_e2e::{eventually, raw, Mqtt, TestServer, TestUser};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

const MIB: f64 = 1024.0 * 1024.0;

/// A body of about 15 KiB (the limit is 16): pushes that fill socket
/// buffers and queues fast.
fn big_body(i: usize) -> Value {
    json!({"text": format!("m{i}"), "pad": "p".repeat(15_000)})
}

/// A raw client that connects, subscribes to its own space at `qos`, reads
/// the CONNACK and SUBACK, and never reads again.
async fn stuck_client(
    server: &TestServer,
    user: &TestUser,
    qos: u8,
    keep_alive: u16,
) -> Result<TcpStream> {
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&raw::connect(4, "stuck", user, keep_alive))
        .await?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), sock.read_exact(&mut connack)).await??;
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK");
    let filter = format!("users/{}/#", user.id);
    sock.write_all(&raw::subscribe(1, &filter, qos)).await?;
    let mut suback = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), sock.read_exact(&mut suback)).await??;
    assert_eq!(suback, [0x90, 0x03, 0x00, 0x01, qos], "SUBACK");
    Ok(sock)
}

/// Live MQTT connections, as `/healthz` reports them.
async fn connections(server: &TestServer) -> Result<u64> {
    let health = server.health().await?;
    health["mqtt_connections"]
        .as_u64()
        .ok_or_else(|| anyhow!("no mqtt_connections in {health}"))
}

/// chatd with no send limit and this MQTT write timeout (seconds).
async fn start(write_timeout: &str) -> Result<TestServer> {
    TestServer::start_with(&[
        "--send-rate",
        "0",
        "--auth-ip-rate",
        "0",
        "--mqtt-write-timeout",
        write_timeout,
        // The store writer's page cache (64 MiB by default) fills with the
        // 15 KiB messages sent here, and would count as connection memory;
        // SQLite's own default keeps it out of the measurement.
        "--store-cache-mib",
        "2",
    ])
    .await
}

/// Sends `per_victim` messages to each victim from the senders, 8 at a
/// time; `small` sends short texts instead of 15 KiB bodies.
async fn flood(
    senders: &[TestUser],
    victims: &[u64],
    per_victim: usize,
    round: usize,
    small: bool,
) -> Result<()> {
    let slots = std::sync::Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for i in 0..per_victim {
        for (v, &to) in victims.iter().enumerate() {
            let sender = senders[(i + v) % senders.len()].clone();
            let slots = slots.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire().await?;
                let cid = format!("r{round}-to{to}-{i}");
                let body = if small {
                    json!({"text": cid})
                } else {
                    big_body(i)
                };
                let (s, m) = sender
                    .post(
                        "/v1/messages",
                        &json!({"to": {"user": to}, "client_msg_id": cid, "body": body}),
                    )
                    .await?;
                if s != 201 {
                    bail!("send {cid}: {s} {m}");
                }
                Ok(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Healthy subscribers and their connections.
type Watchers = Vec<(TestUser, Mqtt)>;

/// Measures push latency to healthy subscribers until stopped: every
/// 100 ms a small message to the next watcher, timed from the start of the
/// HTTP send to the push arriving on the watcher's MQTT connection.
fn watch_latency(
    tag: &'static str,
    sender: TestUser,
    mut watchers: Watchers,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(Vec<Duration>, Watchers)>> {
    tokio::spawn(async move {
        let mut latencies = Vec::new();
        for n in 0usize.. {
            let count = watchers.len();
            let (user, mqtt) = &mut watchers[n % count];
            let cid = format!("{tag}-{n}");
            let started = Instant::now();
            let (s, m) = sender.send_text(user.id, &cid, &cid).await?;
            if s != 201 {
                bail!("probe send: {s} {m}");
            }
            loop {
                let event = mqtt
                    .next_of_type("message.created", Duration::from_secs(20))
                    .await?
                    .ok_or_else(|| anyhow!("{cid}: no push to a healthy watcher within 20 s"))?;
                if event["message"]["client_msg_id"] == cid.as_str() {
                    break;
                }
            }
            latencies.push(started.elapsed());
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        Ok((latencies, watchers))
    })
}

/// (median, 99th percentile, worst).
fn spread(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: usize| {
        v.get((v.len() * q / 100).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(50), at(99), v.last().copied().unwrap_or_default())
}

async fn users(server: &TestServer, prefix: &str, n: usize) -> Result<Vec<TestUser>> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    server.accounts().users(&names, 4).await
}

#[tokio::test]
async fn stuck_subscribers_cost_bounded_memory_and_do_not_slow_others() -> Result<()> {
    // A long write timeout: here the stuck clients must stay connected, so
    // what they cost can be measured.
    let server = start("600").await?;
    let senders = users(&server, "sender", 2).await?;
    let qos0 = users(&server, "victim0-", 3).await?;
    let qos1 = users(&server, "victim1-", 3).await?;
    let mut watchers = Vec::new();
    for w in users(&server, "watcher", 3).await? {
        let mqtt = server.mqtt(&w).await?;
        watchers.push((w, mqtt));
    }
    let qos0_ids: Vec<u64> = qos0.iter().map(|v| v.id).collect();
    let qos1_ids: Vec<u64> = qos1.iter().map(|v| v.id).collect();
    const PER_ROUND: usize = 120;
    const ROUNDS: usize = 6;

    // Warm up caches, the allocator and the router's log of every publish
    // (which keeps up to 5 MiB of pushes already delivered: 80 × 6 pushes
    // of 15 KiB fill it) with the victims online and reading, and measure
    // the watchers' latency with nobody stuck.
    let mut healthy = Vec::new();
    for v in qos0.iter().chain(&qos1) {
        healthy.push(server.mqtt(v).await?);
    }
    let (stop, stop_rx) = watch::channel(false);
    let probe = watch_latency("quiet", senders[0].clone(), watchers, stop_rx);
    flood(
        &senders,
        &[qos0_ids.clone(), qos1_ids.clone()].concat(),
        80,
        0,
        false,
    )
    .await?;
    let _ = stop.send(true);
    let (quiet, watchers) = probe.await??;
    let (quiet_p50, quiet_p99, quiet_worst) = spread(quiet);
    drop(healthy);
    eventually(Duration::from_secs(10), || async {
        Ok((connections(&server).await? == 3).then_some(()))
    })
    .await?;
    let rss0 = server.rss_bytes()?;

    let mut stuck = Vec::new();
    for v in &qos0 {
        stuck.push(stuck_client(&server, v, 0, 0).await?);
    }
    for v in &qos1 {
        stuck.push(stuck_client(&server, v, 1, 0).await?);
    }
    let (stop, stop_rx) = watch::channel(false);
    let probe = watch_latency("busy", senders[0].clone(), watchers, stop_rx);
    let flood_started = Instant::now();
    // QoS 1: the gateway stops at 100 deliveries in flight, and the next
    // ones wait in the connection's mailbox (1 MiB, 69 of these pushes);
    // 200 overflow it, and the connection is closed: its client will catch
    // up by sync.
    flood(&senders, &qos1_ids, 200, 1, false).await?;
    // QoS 0: nothing waits for acks; the socket buffers fill, then the
    // gateway's write blocks (for the write timeout, 600 s here), then the
    // mailbox fills and overflows, which the connection notices once its
    // write returns.
    let mut rss = Vec::new();
    for round in 1..=ROUNDS {
        flood(&senders, &qos0_ids, PER_ROUND, round, false).await?;
        rss.push(server.rss_bytes()?);
    }
    let flood_took = flood_started.elapsed();
    let _ = stop.send(true);
    let (busy, _watchers) = probe.await??;
    let probes = busy.len();
    let (busy_p50, busy_p99, busy_worst) = spread(busy);
    // The QoS 0 clients are still connected, blocked in a write: the
    // memory above was measured while they were stuck. The QoS 1 ones fell
    // behind and were closed.
    eventually(Duration::from_secs(10), || async {
        Ok((connections(&server).await? == 3 + 3).then_some(()))
    })
    .await?;

    let growth: Vec<f64> = rss
        .iter()
        .map(|r| (*r as f64 - rss0 as f64) / MIB)
        .collect();
    let peak = growth.iter().copied().fold(0.0, f64::max);
    let per_stuck = peak / qos0.len() as f64;
    let late = growth[ROUNDS - 1] - growth[ROUNDS - 3];
    let late_sent = (2 * PER_ROUND * qos0.len() * 15_100) as f64 / MIB;
    eprintln!(
        "slow: 6 stuck subscribers (3 at QoS 0 sent {} pushes of 15 KiB each, 3 at QoS 1 sent 200 each) in {flood_took:?}; \
         chatd RSS {:.0} MiB before; growth after each QoS 0 round of {PER_ROUND}: {growth:.1?} MiB; \
         peak {per_stuck:.1} MiB per stuck QoS 0 connection; {late:.1} MiB over the last 2 rounds ({late_sent:.1} MiB sent); \
         healthy watchers' push latency: quiet p50 {quiet_p50:?} p99 {quiet_p99:?} worst {quiet_worst:?}; \
         during the flood ({probes} probes) p50 {busy_p50:?} p99 {busy_p99:?} worst {busy_worst:?}",
        ROUNDS * PER_ROUND,
        rss0 as f64 / MIB,
    );
    // A stuck QoS 0 connection holds at most 1 MiB (plus one push) in its
    // mailbox and 64 KiB (plus one push) in its output buffer: ~1.1 MiB of
    // 15 KiB pushes. The RSS grows by more (3–6 MiB per stuck connection
    // here; 0 with the same load and nobody stuck; 2–4 MiB with jemalloc's
    // dirty-page decay off): memory the allocator keeps after the pushes
    // that pass through at full speed, not traced further; it stops
    // growing while more is sent (below). The kernel's socket buffers hold
    // up to `tcp_wmem` (4 MiB) more, outside the RSS.
    assert!(per_stuck < 7.0, "{per_stuck:.1} MiB per stuck connection");
    // Once the queues are full, more messages cost nothing more.
    assert!(
        late < late_sent / 3.0,
        "RSS grew {late:.1} MiB while {late_sent:.1} MiB more were sent: unbounded queue?"
    );
    assert!(
        busy_worst < Duration::from_secs(2),
        "a healthy watcher waited {busy_worst:?} for a push"
    );
    drop(stuck);
    Ok(())
}

#[tokio::test]
async fn stuck_subscribers_are_disconnected_and_catch_up_by_sync() -> Result<()> {
    let server = start("2").await?;
    let senders = users(&server, "sender", 2).await?;
    let v = users(&server, "victim", 4).await?;
    let watcher = server.user("watcher").await?;
    let mut watcher_mqtt = server.mqtt(&watcher).await?;

    // 0: QoS 0, 1: QoS 1, both never reading, keep-alive off.
    let _qos0 = stuck_client(&server, &v[0], 0, 0).await?;
    let _qos1 = stuck_client(&server, &v[1], 1, 0).await?;
    // 2: rumqttc with its event loop no longer polled (keep-alive 5 s).
    let mut opts = rumqttc::MqttOptions::new("paused", "127.0.0.1", server.mqtt.port());
    opts.set_credentials(v[2].id.to_string(), v[2].access_token.clone());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut paused) = rumqttc::AsyncClient::new(opts, 16);
    client
        .subscribe(format!("users/{}/#", v[2].id), rumqttc::QoS::AtLeastOnce)
        .await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), paused.poll()).await?? {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    // 3: QoS 1 and small pushes: never reads, never acknowledges, but the
    // 100 deliveries in flight fit in the socket buffers.
    let _quiet = stuck_client(&server, &v[3], 1, 0).await?;
    assert_eq!(connections(&server).await?, 5);

    let started = Instant::now();
    // QoS 0 fills the socket buffers (~4 MiB on loopback), then the write
    // blocks: dropped after the write timeout. The QoS 1 ones stop at 100 in
    // flight and just never acknowledge.
    flood(&senders, &[v[0].id], 350, 1, false).await?;
    flood(&senders, &[v[1].id, v[2].id], 150, 1, false).await?;
    flood(&senders, &[v[3].id], 150, 1, true).await?;
    let flooded = started.elapsed();
    let sent = [350u64, 150, 150, 150];

    for (i, u) in v.iter().enumerate() {
        let mark = format!("user_id={}", u.id);
        let took = eventually(Duration::from_secs(30), || async {
            Ok(server
                .logs()
                .iter()
                .any(|l| l.contains("client dropped") && l.contains(&mark))
                .then(|| started.elapsed()))
        })
        .await
        .map_err(|_| {
            anyhow!(
                "stuck client {i} (user {}) still connected 30 s after the flood",
                u.id
            )
        })?;
        let why = server
            .logs()
            .into_iter()
            .find(|l| l.contains("client dropped") && l.contains(&mark))
            .unwrap_or_default();
        eprintln!("slow: stuck client {i} dropped {took:?} after the flood began (flood took {flooded:?}): {why}");
    }
    assert_eq!(connections(&server).await?, 1, "only the watcher is left");

    // The watcher was never affected; the victims catch up by sync.
    let (s, _) = senders[0]
        .send_text(watcher.id, "hello", "still fast")
        .await?;
    assert_eq!(s, 201);
    let event = watcher_mqtt
        .next_of_type("message.created", Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no push to the watcher"))?;
    assert_eq!(event["message"]["client_msg_id"], "hello");
    for (u, n) in v.iter().zip(sent) {
        let _mqtt = server.mqtt(u).await?;
        let events = u.sync_all(0).await?;
        let cursors: Vec<u64> = events.iter().filter_map(|e| e["cursor"].as_u64()).collect();
        assert_eq!(cursors, (1..=n).collect::<Vec<u64>>(), "user {}", u.id);
    }
    drop(client);
    Ok(())
}
