//! Persistent MQTT sessions served from the store: a stock client with
//! nothing but a persistent session gets every event it missed while away
//! (across a SIGKILL of chatd), in order, once each, with no HTTP call;
//! a backlog over the bound gets `sync.required`; Session Expiry, takeover,
//! wills; and no session ever reaches another user's events.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mqchat_e2e::raw::{self, Connect, RawPacket, RawPublish, RawWill};
use mqchat_e2e::{eventually, patient, TestServer, TestUser};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw MQTT client on a TCP socket.
struct Client {
    sock: TcpStream,
    buf: Vec<u8>,
    v5: bool,
}

/// A CONNACK: session present, and the return (reason) code.
#[derive(Debug, PartialEq, Eq)]
struct ConnAck {
    present: bool,
    code: u8,
}

impl Client {
    async fn connect(
        server: &TestServer,
        user: &TestUser,
        c: &Connect,
    ) -> Result<(Client, ConnAck)> {
        let sock = TcpStream::connect(server.mqtt).await?;
        let mut client = Client {
            sock,
            buf: Vec::new(),
            v5: c.level == 5,
        };
        client.send(&c.bytes(user)).await?;
        let ack = client
            .next(Duration::from_secs(5))
            .await?
            .ok_or_else(|| anyhow!("no CONNACK"))?;
        if ack.kind() != 2 {
            bail!("expected CONNACK, got {ack:?}");
        }
        let ack = ConnAck {
            present: ack.body.first().is_some_and(|f| f & 1 == 1),
            code: ack.body.get(1).copied().unwrap_or(0xFF),
        };
        Ok((client, ack))
    }

    /// Connects and expects success.
    async fn accepted(server: &TestServer, user: &TestUser, c: &Connect) -> Result<(Client, bool)> {
        let (client, ack) = Client::connect(server, user, c).await?;
        if ack.code != 0 {
            bail!("CONNECT refused: {ack:?}");
        }
        Ok((client, ack.present))
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.sock.write_all(bytes).await?;
        Ok(())
    }

    /// The next packet; `None` if none comes within `wait`; an error once
    /// the server closed the connection.
    async fn next(&mut self, wait: Duration) -> Result<Option<RawPacket>> {
        let deadline = tokio::time::Instant::now() + patient(wait);
        loop {
            if let Some(p) = raw::take_packet(&mut self.buf) {
                return Ok(Some(p));
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.sock.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) | Ok(Err(_)) => bail!("connection closed"),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) -> Result<()> {
        let packet = if self.v5 {
            raw::subscribe5(1, filter, qos)
        } else {
            raw::subscribe(1, filter, qos)
        };
        self.send(&packet).await?;
        loop {
            let p = self
                .next(Duration::from_secs(5))
                .await?
                .ok_or_else(|| anyhow!("no SUBACK"))?;
            if p.kind() == 9 {
                let code = *p.body.last().unwrap_or(&0x80);
                if code > 1 {
                    bail!("subscription refused: {code:#x}");
                }
                return Ok(());
            }
        }
    }

    /// The next PUBLISH within `wait` (other packets skipped); acknowledged
    /// when `ack`.
    async fn publish(&mut self, wait: Duration, ack: bool) -> Result<Option<RawPublish>> {
        let deadline = tokio::time::Instant::now() + patient(wait);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(p) = self.next(left).await? else {
                return Ok(None);
            };
            if let Some(publish) = p.publish(self.v5) {
                if let (true, Some(pkid)) = (ack, publish.pkid) {
                    self.send(&raw::puback(pkid)).await?;
                }
                return Ok(Some(publish));
            }
        }
    }

    async fn disconnect(mut self) -> Result<()> {
        let packet: &[u8] = if self.v5 {
            &[0xE0, 0x01, 0x00]
        } else {
            &[0xE0, 0x00]
        };
        self.send(packet).await?;
        // The server closes once it has the DISCONNECT.
        let mut rest = [0u8; 64];
        let _ =
            tokio::time::timeout(patient(Duration::from_secs(5)), self.sock.read(&mut rest)).await;
        Ok(())
    }
}

fn json(p: &RawPublish) -> Result<Value> {
    serde_json::from_slice(&p.payload).context("payload is not JSON")
}

fn events_topic(user: &TestUser) -> String {
    format!("users/{}/events", user.id)
}

/// The user's newest inbox cursor, read over HTTP by the test.
async fn head(user: &TestUser) -> Result<u64> {
    Ok(user
        .sync_all(0)
        .await?
        .last()
        .and_then(|e| e["cursor"].as_u64())
        .unwrap_or(0))
}

/// Waits until the server has logged the end of `n` connections, so that
/// their sessions' goodbyes are written.
async fn disconnected(server: &TestServer, n: usize) -> Result<()> {
    eventually(Duration::from_secs(5), || async {
        let ended = server
            .logs()
            .iter()
            .filter(|l| l.contains("client disconnected") || l.contains("client dropped"))
            .count();
        Ok((ended >= n).then_some(()))
    })
    .await
}

/// Sends `n` texts from `from` to `to`; returns their texts.
async fn send_texts(from: &TestUser, to: &TestUser, tag: &str, n: usize) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for i in 0..n {
        let text = format!("{tag} {i}");
        let (status, _) = from.send_text(to.id, &format!("{tag}-{i}"), &text).await?;
        assert_eq!(status, 201);
        texts.push(text);
    }
    Ok(texts)
}

/// A stock client with a persistent session on the user's events, run
/// to its end as a process: mosquitto_sub (`-c -i phone -q 1`, MQTT 3.1.1,
/// or 5 with a session expiry of an hour), paho-mqtt in Python
/// (`tests/clients/paho_session.py`), or MQTT.js over WebSocket in Node
/// (`tests/clients/mqttjs_session.mjs`).
#[derive(Clone, Copy, Debug)]
enum Stock {
    Mosquitto(&'static str),
    Paho,
    MqttJs,
}

/// What one run of a stock client does.
#[derive(Clone, Copy, Debug)]
enum Run {
    /// Make the session and its subscription, then DISCONNECT.
    Subscribe,
    /// Resume the session, print `n` payloads, then DISCONNECT.
    Receive(usize),
}

fn clients_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// A Python interpreter that has paho-mqtt (Debian's python3-paho-mqtt
/// installs it for the system's), or `None`: skipped outside CI.
fn python_with_paho() -> Result<Option<&'static str>> {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = std::process::Command::new(python)
            .args(["-c", "import paho.mqtt.client"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(Some(python));
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("python3-paho-mqtt is required in CI");
    }
    eprintln!("SKIPPED: paho-mqtt not installed");
    Ok(None)
}

/// Node with MQTT.js from tests/browser (`npm ci` there), or `None`.
fn node_with_mqttjs() -> Result<Option<std::path::PathBuf>> {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules");
    if mqchat_e2e::tool_available("node", "nodejs")? && modules.join("mqtt").exists() {
        return Ok(Some(modules));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("MQTT.js is required in CI (npm ci in tests/browser)");
    }
    eprintln!("SKIPPED: MQTT.js not installed (npm ci in tests/browser)");
    Ok(None)
}

impl Stock {
    /// The client's command for `run`, `None` when it is not installed.
    fn command(
        self,
        server: &TestServer,
        user: &TestUser,
        run: Run,
    ) -> Result<Option<tokio::process::Command>> {
        let (uid, token) = (user.id.to_string(), user.access_token.clone());
        let topic = events_topic(user);
        let script_args = match run {
            Run::Subscribe => vec!["subscribe".to_owned()],
            Run::Receive(n) => vec!["receive".to_owned(), n.to_string()],
        };
        let mut cmd = match self {
            Stock::Mosquitto(version) => {
                if !mqchat_e2e::tool_available("mosquitto_sub", "mosquitto-clients")? {
                    return Ok(None);
                }
                let mut cmd = tokio::process::Command::new("mosquitto_sub");
                cmd.args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
                    .args(["-u", &uid, "-P", &token])
                    .args(["-c", "-i", "phone", "-q", "1", "-V", version, "-t", &topic]);
                if version == "5" {
                    cmd.args(["-x", "3600"]);
                }
                match run {
                    // -E: exit once subscribed (a normal DISCONNECT).
                    Run::Subscribe => cmd.arg("-E"),
                    Run::Receive(n) => cmd.args(["-C", &n.to_string(), "-W", "20"]),
                };
                return Ok(Some(cmd));
            }
            Stock::Paho => {
                let Some(python) = python_with_paho()? else {
                    return Ok(None);
                };
                let mut cmd = tokio::process::Command::new(python);
                cmd.arg(clients_dir().join("paho_session.py"))
                    .args(["127.0.0.1", &server.mqtt.port().to_string()]);
                cmd
            }
            Stock::MqttJs => {
                let Some(modules) = node_with_mqttjs()? else {
                    return Ok(None);
                };
                let mut cmd = tokio::process::Command::new("node");
                cmd.env("NODE_PATH", modules)
                    .arg(clients_dir().join("mqttjs_session.mjs"))
                    .arg(server.ws_url());
                cmd
            }
        };
        cmd.args([&uid, &token, "laptop", &topic])
            .args(&script_args);
        Ok(Some(cmd))
    }

    /// Runs the client to its end: the payloads it printed, `None` when it
    /// is not installed.
    async fn run(
        self,
        server: &TestServer,
        user: &TestUser,
        run: Run,
    ) -> Result<Option<Vec<Value>>> {
        let Some(mut cmd) = self.command(server, user, run)? else {
            return Ok(None);
        };
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(patient(Duration::from_secs(30)), cmd.output())
            .await
            .map_err(|_| anyhow!("{self:?} {run:?} did not exit"))??;
        if !out.status.success() {
            bail!(
                "{self:?} {run:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let lines = String::from_utf8(out.stdout)?
            .lines()
            .map(|l| serde_json::from_str(l).context("a line that is not JSON"))
            .collect::<Result<Vec<Value>>>()?;
        Ok(Some(lines))
    }
}

/// The stock client's whole story: its session made, messages sent while
/// it is away, chatd SIGKILLed and restarted, and on reconnect exactly the
/// missed events, in cursor order, once each, with no HTTP call by the
/// client; then nothing twice.
async fn stock_client_resumes_across_sigkill(client: Stock) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let mut server = TestServer::start_in(&dir, &[]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    match client.run(&server, &bob, Run::Subscribe).await? {
        Some(got) => assert!(got.is_empty()),
        None => return Ok(()),
    }
    let start = head(&bob).await?;
    let texts = send_texts(&alice, &bob, "away", 5).await?;
    server.kill9().await?;
    server = TestServer::start_in(&dir, &[]).await?;
    let (alice, bob) = (alice.via(&server), bob.via(&server));

    let got = client
        .run(&server, &bob, Run::Receive(5))
        .await?
        .unwrap_or_default();
    let cursors: Vec<u64> = got.iter().filter_map(|e| e["cursor"].as_u64()).collect();
    assert_eq!(
        cursors,
        (start + 1..=start + 5).collect::<Vec<_>>(),
        "{got:?}"
    );
    let got_texts: Vec<&str> = got
        .iter()
        .filter_map(|e| e["message"]["body"]["text"].as_str())
        .collect();
    assert_eq!(got_texts, texts);

    // Acknowledged: the next resume starts after them.
    let later = send_texts(&alice, &bob, "later", 1).await?;
    let got = client
        .run(&server, &bob, Run::Receive(1))
        .await?
        .unwrap_or_default();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["cursor"], start + 6, "nothing twice: {got:?}");
    assert_eq!(got[0]["message"]["body"]["text"], later[0]);
    Ok(())
}

#[tokio::test]
async fn mosquitto_311_persistent_session_gets_what_it_missed_across_sigkill() -> Result<()> {
    stock_client_resumes_across_sigkill(Stock::Mosquitto("311")).await
}

#[tokio::test]
async fn mosquitto_5_session_with_expiry_gets_what_it_missed_across_sigkill() -> Result<()> {
    stock_client_resumes_across_sigkill(Stock::Mosquitto("5")).await
}

#[tokio::test]
async fn paho_persistent_session_gets_what_it_missed_across_sigkill() -> Result<()> {
    stock_client_resumes_across_sigkill(Stock::Paho).await
}

#[tokio::test]
async fn mqttjs_over_websocket_gets_what_it_missed_across_sigkill() -> Result<()> {
    stock_client_resumes_across_sigkill(Stock::MqttJs).await
}

#[tokio::test]
async fn a_backlog_over_the_bound_gets_sync_required_instead() -> Result<()> {
    let mosquitto = Stock::Mosquitto("311");
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let flags = ["--mqtt-session-backlog", "3"];
    let mut server = TestServer::start_in(&dir, &flags).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    if mosquitto
        .run(&server, &bob, Run::Subscribe)
        .await?
        .is_none()
    {
        return Ok(());
    }
    let start = head(&bob).await?;
    send_texts(&alice, &bob, "many", 5).await?;
    server.kill9().await?;
    server = TestServer::start_in(&dir, &flags).await?;
    let (alice, bob) = (alice.via(&server), bob.via(&server));

    let got = mosquitto
        .run(&server, &bob, Run::Receive(1))
        .await?
        .unwrap_or_default();
    assert_eq!(
        got,
        vec![serde_json::json!({
            "type": "sync.required",
            "after": start,
            "until": start + 5,
            "reason": "backlog",
        })]
    );
    // What it skips is in sync; the session carries on after it.
    let skipped = bob.sync_all(start).await?;
    assert_eq!(skipped.len(), 5);
    let later = send_texts(&alice, &bob, "after", 1).await?;
    let got = mosquitto
        .run(&server, &bob, Run::Receive(1))
        .await?
        .unwrap_or_default();
    assert_eq!(got[0]["cursor"], start + 6, "{got:?}");
    assert_eq!(got[0]["message"]["body"]["text"], later[0]);
    Ok(())
}

/// What was sent and not acknowledged is sent again with DUP=1; what was
/// acknowledged never again; live pushes follow the replay with no gap.
#[tokio::test]
async fn unacknowledged_events_are_redelivered_with_dup_then_live_ones_follow() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let c = Connect::v311("tablet", false);
    let (mut conn, present) = Client::accepted(&server, &bob, &c).await?;
    assert!(!present);
    conn.subscribe(&events_topic(&bob), 1).await?;
    let start = head(&bob).await?;
    send_texts(&alice, &bob, "first", 3).await?;
    // The first acknowledged, two received and not acknowledged.
    let one = conn
        .publish(Duration::from_secs(5), true)
        .await?
        .context("1")?;
    assert!(!one.dup);
    for _ in 0..2 {
        let p = conn
            .publish(Duration::from_secs(5), false)
            .await?
            .context("2, 3")?;
        assert!(!p.dup);
    }
    drop(conn); // no DISCONNECT
    disconnected(&server, 1).await?;
    send_texts(&alice, &bob, "away", 2).await?;

    let (mut conn, present) = Client::accepted(&server, &bob, &c).await?;
    assert!(present, "session present");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let p = conn
            .publish(Duration::from_secs(5), true)
            .await?
            .context("replay")?;
        seen.push((json(&p)?["cursor"].as_u64().unwrap_or(0), p.dup));
    }
    assert_eq!(
        seen,
        vec![
            (start + 2, true),
            (start + 3, true),
            (start + 4, false),
            (start + 5, false)
        ]
    );
    // Live, right after the replay.
    send_texts(&alice, &bob, "live", 1).await?;
    let p = conn
        .publish(Duration::from_secs(5), true)
        .await?
        .context("live")?;
    assert_eq!(
        (json(&p)?["cursor"].as_u64(), p.dup),
        (Some(start + 6), false)
    );
    conn.disconnect().await?;
    disconnected(&server, 2).await?;

    // Everything acknowledged: nothing comes again.
    let (mut conn, present) = Client::accepted(&server, &bob, &c).await?;
    assert!(present);
    send_texts(&alice, &bob, "next", 1).await?;
    let p = conn
        .publish(Duration::from_secs(5), true)
        .await?
        .context("next")?;
    assert_eq!(json(&p)?["cursor"].as_u64(), Some(start + 7));
    Ok(())
}

/// Events committed while a resumed session's replay runs are neither
/// lost nor delivered twice.
#[tokio::test]
async fn sends_during_the_replay_arrive_once_in_order() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "0"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let c = Connect::v311("watch", false);
    let (mut conn, _) = Client::accepted(&server, &bob, &c).await?;
    conn.subscribe(&events_topic(&bob), 1).await?;
    conn.disconnect().await?;
    disconnected(&server, 1).await?;
    let start = head(&bob).await?;
    send_texts(&alice, &bob, "before", 250).await?;
    let sender = {
        let (alice, bob) = (alice.clone(), bob.clone());
        tokio::spawn(async move { send_texts(&alice, &bob, "during", 50).await })
    };
    let (mut conn, present) = Client::accepted(&server, &bob, &c).await?;
    assert!(present);
    let mut cursors = Vec::new();
    while cursors.len() < 300 {
        let p = conn
            .publish(Duration::from_secs(10), true)
            .await?
            .with_context(|| format!("after {} events", cursors.len()))?;
        cursors.push(json(&p)?["cursor"].as_u64().unwrap_or(0));
    }
    sender.await??;
    assert_eq!(cursors, (start + 1..=start + 300).collect::<Vec<_>>());
    assert!(
        conn.publish(Duration::from_millis(300), true)
            .await?
            .is_none(),
        "nothing twice"
    );
    Ok(())
}

#[tokio::test]
async fn session_expiry_zero_ends_the_session_with_the_connection() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;
    let (conn, present) =
        Client::accepted(&server, &bob, &Connect::v5("p", false, Some(0))).await?;
    assert!(!present);
    conn.disconnect().await?;
    disconnected(&server, 1).await?;
    let (conn, present) =
        Client::accepted(&server, &bob, &Connect::v5("p", false, Some(60))).await?;
    assert!(!present, "MQTT-3.1.2-23: the session ended at disconnect");
    conn.disconnect().await?;
    disconnected(&server, 2).await?;
    let (_conn, present) =
        Client::accepted(&server, &bob, &Connect::v5("p", false, Some(60))).await?;
    assert!(present, "an expiry of 60 s keeps it");
    Ok(())
}

#[tokio::test]
async fn an_expired_session_is_gone_and_clean_start_discards_one() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;
    let (conn, _) = Client::accepted(&server, &bob, &Connect::v5("e", false, Some(1))).await?;
    conn.disconnect().await?;
    disconnected(&server, 1).await?;
    // The session's expiry is what this waits for.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (conn, present) =
        Client::accepted(&server, &bob, &Connect::v5("e", false, Some(60))).await?;
    assert!(!present, "expired");
    conn.disconnect().await?;
    disconnected(&server, 2).await?;
    // Clean start discards it (3.1.1's clean session too).
    let (conn, present) = Client::accepted(&server, &bob, &Connect::v311("e", true)).await?;
    assert!(!present);
    conn.disconnect().await?;
    disconnected(&server, 3).await?;
    let (_conn, present) = Client::accepted(&server, &bob, &Connect::v311("e", false)).await?;
    assert!(!present, "the clean session discarded it");
    Ok(())
}

#[tokio::test]
async fn taking_over_a_persistent_session_sends_disconnect_0x8e() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let c = Connect::v5("car", false, Some(600));
    let (mut old, _) = Client::accepted(&server, &bob, &c).await?;
    old.subscribe(&events_topic(&bob), 1).await?;
    let (mut new, present) = Client::accepted(&server, &bob, &c).await?;
    assert!(present, "the new connection resumes the session");
    let goodbye = old
        .next(Duration::from_secs(5))
        .await?
        .context("no DISCONNECT")?;
    assert_eq!(
        (goodbye.first, goodbye.body.first().copied()),
        (0xE0, Some(0x8E))
    );
    // The session (and its subscription) carries on on the new connection.
    send_texts(&alice, &bob, "to the car", 1).await?;
    let p = new
        .publish(Duration::from_secs(5), true)
        .await?
        .context("push")?;
    assert_eq!(json(&p)?["message"]["body"]["text"], "to the car 0");
    Ok(())
}

fn will(user: &TestUser, qos: u8, retain: bool) -> RawWill {
    RawWill {
        topic: format!("users/{}/up/status", user.id),
        message: b"{\"gone\":true}".to_vec(),
        qos,
        retain,
        delay: None,
    }
}

#[tokio::test]
async fn a_will_reaches_the_users_other_connections_on_abnormal_close_only() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut watcher = server.mqtt(&bob).await?;

    // A normal DISCONNECT discards the will.
    let c = Connect::v311("sensor", true).with_will(will(&bob, 1, false));
    let (conn, _) = Client::accepted(&server, &bob, &c).await?;
    conn.disconnect().await?;
    disconnected(&server, 1).await?;
    send_texts(&alice, &bob, "marker", 1).await?;
    match watcher.next(patient(Duration::from_secs(5))).await? {
        Some(mqchat_e2e::Seen::Publish { topic, .. }) => {
            assert_eq!(topic, events_topic(&bob), "no will after DISCONNECT")
        }
        other => bail!("expected the marker, got {other:?}"),
    }

    // A dropped connection publishes it.
    let (conn, _) = Client::accepted(&server, &bob, &c).await?;
    drop(conn);
    match watcher.next(patient(Duration::from_secs(5))).await? {
        Some(mqchat_e2e::Seen::Publish { topic, payload }) => {
            assert_eq!(topic, format!("users/{}/up/status", bob.id));
            assert_eq!(payload, serde_json::json!({"gone": true}));
        }
        other => bail!("expected the will, got {other:?}"),
    }

    // Nobody else hears it: alice, subscribed to her own space.
    let mut other = server.mqtt(&alice).await?;
    let (conn, _) = Client::accepted(&server, &bob, &c).await?;
    drop(conn);
    assert!(watcher
        .next(patient(Duration::from_secs(5)))
        .await?
        .is_some());
    assert!(other.next(Duration::from_millis(300)).await?.is_none());
    Ok(())
}

/// A will is published at its own QoS: a QoS 1 subscriber gets a QoS 0
/// will at QoS 0, and a QoS 1 will at QoS 1.
#[tokio::test]
async fn a_will_is_delivered_at_no_more_than_its_own_qos() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;
    let watcher = Connect::v311("watcher", true);
    let (mut watcher, _) = Client::accepted(&server, &bob, &watcher).await?;
    watcher
        .subscribe(&format!("users/{}/up/#", bob.id), 1)
        .await?;
    for qos in [0, 1] {
        let c = Connect::v311("sensor", true).with_will(will(&bob, qos, false));
        let (conn, _) = Client::accepted(&server, &bob, &c).await?;
        drop(conn);
        let got = watcher
            .publish(patient(Duration::from_secs(5)), true)
            .await?
            .context("the will")?;
        assert_eq!(got.topic, format!("users/{}/up/status", bob.id));
        assert_eq!(got.qos, qos, "a QoS {qos} will");
    }
    Ok(())
}

#[tokio::test]
async fn will_qos_2_and_will_retain_are_refused_at_connect() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;
    let refused = |c: Connect| {
        let (server, bob) = (&server, &bob);
        async move { Ok::<_, anyhow::Error>(Client::connect(server, bob, &c).await?.1) }
    };
    let v5 = Connect::v5("w", true, None);
    assert_eq!(
        refused(v5.clone().with_will(will(&bob, 2, false)))
            .await?
            .code,
        0x9B
    );
    assert_eq!(refused(v5.with_will(will(&bob, 1, true))).await?.code, 0x9A);
    let v3 = Connect::v311("w", true);
    assert_eq!(
        refused(v3.clone().with_will(will(&bob, 1, true)))
            .await?
            .code,
        0x05
    );
    // 3.1.1 has no Maximum QoS: a QoS 2 will is taken (delivered at most
    // at QoS 1, as everything).
    assert_eq!(
        refused(v3.with_will(will(&bob, 2, false))).await?.code,
        0x00
    );
    Ok(())
}

/// Two users with the same client id have two sessions; neither ever gets
/// the other's events.
#[tokio::test]
async fn a_session_never_replays_another_users_events() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let c = Connect::v311("shared-id", false);
    for user in [&alice, &bob] {
        let (mut conn, _) = Client::accepted(&server, user, &c).await?;
        conn.subscribe(&events_topic(user), 1).await?;
        conn.disconnect().await?;
    }
    disconnected(&server, 2).await?;
    let alice_start = head(&alice).await?;
    send_texts(&carol, &alice, "for alice", 3).await?;

    // Bob's session: his own (present), and nothing of alice's.
    let (mut conn, present) = Client::accepted(&server, &bob, &c).await?;
    assert!(present);
    send_texts(&carol, &bob, "for bob", 1).await?;
    let p = conn
        .publish(Duration::from_secs(5), true)
        .await?
        .context("bob's")?;
    assert_eq!(p.topic, events_topic(&bob));
    assert_eq!(json(&p)?["message"]["body"]["text"], "for bob 0");
    conn.disconnect().await?;

    // Alice's, with what she missed.
    let (mut conn, present) = Client::accepted(&server, &alice, &c).await?;
    assert!(present);
    for i in 0..3 {
        let p = conn
            .publish(Duration::from_secs(5), true)
            .await?
            .context("alice's")?;
        assert_eq!(p.topic, events_topic(&alice));
        assert_eq!(json(&p)?["cursor"].as_u64(), Some(alice_start + 1 + i));
    }
    Ok(())
}

/// On PostgreSQL, a cluster's nodes share the sessions: one made on node 1
/// resumes on node 2 with what it missed, and live pushes from node 1 then
/// reach it over the bus.
#[tokio::test]
async fn a_session_made_on_one_node_resumes_on_another() -> Result<()> {
    let Some(cluster) = mqchat_e2e::cluster::TestCluster::start(2, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let (one, two) = (&cluster.nodes[0], &cluster.nodes[1]);
    let alice = one.user("alice").await?;
    let bob = one.user("bob").await?;
    let c = Connect::v311("roamer", false);
    let (mut conn, _) = Client::accepted(one, &bob, &c).await?;
    conn.subscribe(&events_topic(&bob), 1).await?;
    conn.disconnect().await?;
    disconnected(one, 1).await?;
    let start = head(&bob).await?;
    send_texts(&alice, &bob, "roaming", 3).await?;

    let (mut conn, present) = Client::accepted(two, &bob.via(two), &c).await?;
    assert!(present, "node 2 resumes node 1's session");
    for i in 1..=3 {
        let p = conn
            .publish(Duration::from_secs(5), true)
            .await?
            .context("replay")?;
        assert_eq!(json(&p)?["cursor"].as_u64(), Some(start + i));
    }
    send_texts(&alice, &bob, "live", 1).await?;
    let p = conn
        .publish(Duration::from_secs(10), true)
        .await?
        .context("live over the bus")?;
    assert_eq!(json(&p)?["cursor"].as_u64(), Some(start + 4));
    Ok(())
}

/// A persistent session that falls further behind than its mailbox holds
/// is not disconnected, as a clean one is: what its mailbox dropped is in
/// the store, and it catches up from there.
#[tokio::test]
async fn a_persistent_session_behind_its_mailbox_catches_up_from_the_store() -> Result<()> {
    let server = TestServer::start_with(&["--mqtt-queue-kib", "1", "--send-rate", "0"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let c = Connect {
        receive_max: Some(1),
        ..Connect::v5("slow", false, Some(600))
    };
    let (mut conn, _) = Client::accepted(&server, &bob, &c).await?;
    conn.subscribe(&events_topic(&bob), 1).await?;
    let start = head(&bob).await?;
    // One in flight, unacknowledged, while 20 more (several KiB) come.
    send_texts(&alice, &bob, "first", 1).await?;
    let first = conn
        .publish(Duration::from_secs(5), false)
        .await?
        .context("first")?;
    send_texts(&alice, &bob, "burst", 20).await?;
    conn.send(&raw::puback(first.pkid.unwrap_or(0))).await?;
    let mut cursors = vec![json(&first)?["cursor"].as_u64().unwrap_or(0)];
    while cursors.len() < 21 {
        let p = conn
            .publish(Duration::from_secs(5), true)
            .await?
            .with_context(|| format!("after {cursors:?}"))?;
        cursors.push(json(&p)?["cursor"].as_u64().unwrap_or(0));
    }
    assert_eq!(cursors, (start + 1..=start + 21).collect::<Vec<_>>());
    Ok(())
}

/// MQTT 5 Will Delay Interval: the will waits it out, and a connection
/// that resumes the session within it cancels the will.
#[tokio::test]
async fn a_will_delay_is_waited_out_and_a_resume_cancels_the_will() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut watcher = server.mqtt(&bob).await?;
    let delayed = RawWill {
        delay: Some(1),
        ..will(&bob, 1, false)
    };
    let c = Connect::v5("dev", false, Some(600)).with_will(delayed);

    // Dropped, then resumed within the delay: no will.
    let (conn, _) = Client::accepted(&server, &bob, &c).await?;
    drop(conn);
    disconnected(&server, 1).await?;
    let (conn, present) = Client::accepted(&server, &bob, &c).await?;
    assert!(present);
    // Past the first will's delay (what this waits for), then a marker:
    // the marker is the first thing the watcher sees.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_texts(&alice, &bob, "marker", 1).await?;
    match watcher.next(patient(Duration::from_secs(5))).await? {
        Some(mqchat_e2e::Seen::Publish { topic, .. }) => {
            assert_eq!(
                topic,
                events_topic(&bob),
                "the resumed session's will was cancelled"
            )
        }
        other => bail!("expected the marker, got {other:?}"),
    }

    // Dropped for good: the will comes, a delay later.
    let dropped_at = std::time::Instant::now();
    drop(conn);
    match watcher.next(patient(Duration::from_secs(5))).await? {
        Some(mqchat_e2e::Seen::Publish { topic, .. }) => {
            assert_eq!(topic, format!("users/{}/up/status", bob.id));
            assert!(
                dropped_at.elapsed() >= Duration::from_millis(900),
                "not delayed"
            );
        }
        other => bail!("expected the will, got {other:?}"),
    }
    Ok(())
}
