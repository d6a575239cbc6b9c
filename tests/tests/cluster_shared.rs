//! What several chatd nodes on one PostgreSQL database share besides the
//! data (issue 23), with no bus between them:
//!
//! - limits that protect accounts hold for the whole cluster: login
//!   attempts per account, registration per address and sends per user,
//!   spread over two nodes, are refused at the same count as on one;
//! - webhook deliveries are leased: two nodes deliver each exactly once,
//!   and a node killed while holding leases has its deliveries made by the
//!   other once the leases expire;
//! - an attachment uploaded through one node downloads through another
//!   (one shared `--files-dir`).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mqchat_e2e::postgres::fresh_database;
use mqchat_e2e::webhooks::Receiver;
use mqchat_e2e::{eventually, TestServer, TestUser};
use serde_json::json;

/// One fresh database and a directory for the data dirs of nodes on it.
struct Database {
    url: String,
    dir: tempfile::TempDir,
}

impl Database {
    /// `None` when PostgreSQL is missing (the test skips).
    async fn fresh() -> Result<Option<Database>> {
        let Some(url) = fresh_database().await? else {
            return Ok(None);
        };
        Ok(Some(Database {
            url,
            dir: tempfile::tempdir()?,
        }))
    }

    /// A node named `name` with `flags`, holding the same secrets as the
    /// first node started (a token from one is good on every other).
    async fn node(&self, name: &str, flags: &[&str]) -> Result<TestServer> {
        let first = self.dir.path().join("first");
        let dir = self.dir.path().join(name);
        if first.exists() {
            std::fs::create_dir_all(&dir)?;
            for secret in ["jwt.secret", "admin.token"] {
                std::fs::copy(first.join(secret), dir.join(secret))?;
            }
        }
        let mut args = vec!["--store", self.url.as_str()];
        args.extend_from_slice(flags);
        let node = TestServer::start_in(&dir, &args).await?;
        if !first.exists() {
            std::os::unix::fs::symlink(&dir, &first)?;
        }
        Ok(node)
    }
}

/// Two nodes on one fresh database, started with `flags`; `None` when
/// PostgreSQL is missing.
async fn two_nodes(flags: &[&str]) -> Result<Option<(Database, [TestServer; 2])>> {
    let Some(db) = Database::fresh().await? else {
        return Ok(None);
    };
    let a = db.node("a", flags).await?;
    let b = db.node("b", flags).await?;
    Ok(Some((db, [a, b])))
}

/// POSTs `body` to `path` on `server` without a token; the status.
async fn post_status(server: &TestServer, path: &str, body: serde_json::Value) -> Result<u16> {
    let res = server
        .http_client
        .post(server.url(path))
        .json(&body)
        .send()
        .await?;
    Ok(res.status().as_u16())
}

#[tokio::test]
async fn login_attempts_per_account_are_limited_across_nodes() -> Result<()> {
    let Some((_db, nodes)) = two_nodes(&["--login-rate", "5", "--auth-ip-rate", "0"]).await? else {
        return Ok(());
    };
    nodes[0].user("alice").await?; // one login used
    let mut statuses = Vec::new();
    for i in 0..6 {
        let node = &nodes[i % 2];
        let body = json!({"username": "alice", "password": format!("guess-{i}")});
        statuses.push(post_status(node, "/v1/auth/login", body).await?);
    }
    // As on one node (tests/tests/rate_limits.rs): 5 attempts a minute.
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429]);
    let res = nodes[1]
        .http_client
        .post(nodes[1].url("/v1/auth/login"))
        .json(&json!({"username": "alice", "password": "password-alice"}))
        .send()
        .await?;
    assert_eq!(res.status(), 429);
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "Retry-After: {retry_after:?}"
    );
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["error"]["code"], "rate_limited");
    Ok(())
}

#[tokio::test]
async fn registrations_per_address_are_limited_across_nodes() -> Result<()> {
    let Some((_db, nodes)) = two_nodes(&["--auth-ip-rate", "3"]).await? else {
        return Ok(());
    };
    let mut statuses = Vec::new();
    for (i, name) in ["aaa", "bbb", "ccc", "ddd"].into_iter().enumerate() {
        let body = json!({"username": name, "password": "password-x"});
        statuses.push(post_status(&nodes[i % 2], "/v1/auth/register", body).await?);
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    Ok(())
}

#[tokio::test]
async fn sends_per_user_are_limited_across_nodes() -> Result<()> {
    let flags = [
        "--send-rate",
        "1",
        "--login-rate",
        "0",
        "--auth-ip-rate",
        "0",
    ];
    let Some((_db, nodes)) = two_nodes(&flags).await? else {
        return Ok(());
    };
    let alice = nodes[0].user("alice").await?;
    let bob = nodes[1].user("bob").await?;
    let on = [alice.clone(), alice.via(&nodes[1])];
    let mut statuses = Vec::new();
    // 1 a second with bursts of 10 s worth: 10, then refused.
    for i in 0..12 {
        let (status, _) = on[i % 2].send_text(bob.id, &format!("m{i}"), "hi").await?;
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200 || **s == 201).count();
    assert_eq!(ok, 10, "{statuses:?}");
    assert_eq!(statuses[10..], [429, 429], "{statuses:?}");
    Ok(())
}

/// No limits in the way of the webhook tests' sends.
const UNLIMITED: [&str; 6] = [
    "--send-rate",
    "0",
    "--login-rate",
    "0",
    "--auth-ip-rate",
    "0",
];

/// A webhook for every event to `receiver`, created through `node`.
async fn webhook_to(node: &TestServer, receiver: &Receiver) -> Result<()> {
    let addr = receiver.start("127.0.0.1:0").await?;
    let (status, hook) = node
        .admin_post(
            "/admin/webhooks",
            json!({"url": format!("http://{addr}/hook")}),
        )
        .await?;
    ensure!(status == 201, "{hook}");
    Ok(())
}

/// Sends `n` messages from `from[i % len]` to `to` (offline, so each also
/// queues an offline push); their message ids.
async fn send_n(from: &[TestUser], to: u64, n: usize) -> Result<BTreeSet<u64>> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let (status, m) = from[i % from.len()]
            .send_text(to, &format!("w{i}"), "hi")
            .await?;
        ensure!(status == 200 || status == 201, "{status} {m}");
        ids.extend(m["id"].as_u64());
    }
    Ok(ids)
}

/// The message ids in what `receiver` got of `kind`.
fn delivered_messages(receiver: &Receiver, kind: &str) -> Vec<u64> {
    receiver
        .events()
        .iter()
        .filter(|(_, e)| e["type"] == kind)
        .filter_map(|(_, e)| {
            e["data"]["message"]["id"]
                .as_u64()
                .or_else(|| e["data"]["message_id"].as_u64())
        })
        .collect()
}

#[tokio::test]
async fn two_nodes_deliver_each_webhook_once() -> Result<()> {
    let Some((_db, nodes)) = two_nodes(&UNLIMITED).await? else {
        return Ok(());
    };
    let receiver = Receiver::default();
    webhook_to(&nodes[0], &receiver).await?;
    let alice = nodes[0].user("alice").await?;
    let bob = nodes[1].user("bob").await?;
    // Both nodes' workers see every delivery: sends go through both.
    let from = [alice.clone(), alice.via(&nodes[1])];
    let sent = send_n(&from, bob.id, 60).await?;
    // Each message: one message.created and one offline push for bob.
    eventually(Duration::from_secs(20), || async {
        Ok((receiver.delivery_ids().len() >= 2 * sent.len()).then_some(()))
    })
    .await?;
    // Whatever was still to come has had time to come, twice over: the
    // workers poll every 500 ms.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ids = receiver.delivery_ids();
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "a delivery arrived twice");
    assert_eq!(ids.len(), 2 * sent.len());
    for kind in ["message.created", "user.offline_message"] {
        let got: Vec<u64> = delivered_messages(&receiver, kind);
        let set: BTreeSet<u64> = got.iter().copied().collect();
        assert_eq!(set, sent, "{kind}");
        assert_eq!(got.len(), sent.len(), "{kind}");
    }
    Ok(())
}

#[tokio::test]
async fn a_killed_nodes_deliveries_are_made_by_another_after_its_lease() -> Result<()> {
    let Some(db) = Database::fresh().await? else {
        return Ok(());
    };
    let mut flags = UNLIMITED.to_vec();
    flags.extend(["--webhook-lease", "2"]);
    let mut a = db.node("a", &flags).await?;
    let receiver = Receiver::default();
    receiver.hold(true);
    webhook_to(&a, &receiver).await?;
    let alice = a.user("alice").await?;
    let bob = a.user("bob").await?;
    let sent = send_n(&[alice], bob.id, 5).await?;
    // Node a has claimed every delivery and is stuck on its first.
    eventually(Duration::from_secs(10), || async {
        Ok((receiver.arrived() >= 1).then_some(()))
    })
    .await?;
    let b = db.node("b", &flags).await?;
    a.kill9().await?;
    receiver.hold(false);
    eventually(Duration::from_secs(20), || async {
        Ok(
            (delivered_messages(&receiver, "user.offline_message").len() >= sent.len())
                .then_some(()),
        )
    })
    .await?;
    for kind in ["message.created", "user.offline_message"] {
        let set: BTreeSet<u64> = delivered_messages(&receiver, kind).into_iter().collect();
        assert_eq!(set, sent, "{kind}");
    }
    drop(b);
    Ok(())
}

/// Uploads `bytes` as `name` through `user`'s node; the file's id.
async fn upload(user: &TestUser, name: &str, bytes: Vec<u8>) -> Result<String> {
    let res = user
        .request(reqwest::Method::POST, &format!("/v1/files?name={name}"))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await?;
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await?;
    ensure!(status == 201, "upload {name}: {status} {body}");
    Ok(body["id"].as_str().unwrap_or_default().to_owned())
}

/// Downloads file `id` through `user`'s node.
async fn download(user: &TestUser, id: &str) -> Result<Vec<u8>> {
    let res = user
        .request(reqwest::Method::GET, &format!("/v1/files/{id}"))
        .send()
        .await?;
    ensure!(res.status() == 200, "download {id}: {}", res.status());
    Ok(res.bytes().await?.to_vec())
}

#[tokio::test]
async fn an_upload_through_one_node_downloads_through_another() -> Result<()> {
    let Some(db) = Database::fresh().await? else {
        return Ok(());
    };
    let files = db.dir.path().join("shared-files");
    let files_arg = files.to_string_lossy().into_owned();
    let mut flags = UNLIMITED.to_vec();
    flags.extend(["--files-dir", files_arg.as_str()]);
    let a = db.node("a", &flags).await?;
    let b = db.node("b", &flags).await?;
    let alice = a.user("alice").await?;
    let bob = b.user("bob").await?;
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let id = upload(&alice, "data.bin", bytes.clone()).await?;
    // Alice's own upload, through the other node.
    assert_eq!(download(&alice.via(&b), &id).await?, bytes);
    // Sent to bob through node a, read by bob through node b.
    let (status, m) = alice
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "f1", "body": {"file": {"id": id}}}),
        )
        .await?;
    ensure!(status == 200 || status == 201, "{status} {m}");
    assert_eq!(download(&bob, &id).await?, bytes);

    // The same bytes uploaded through both nodes at once: both land on
    // one content-addressed blob, and each reads back whole.
    let same: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let alice_b = alice.via(&b);
    let (one, two) = tokio::join!(
        upload(&alice, "same-1.bin", same.clone()),
        upload(&alice_b, "same-2.bin", same.clone()),
    );
    let (one, two) = (one?, two?);
    assert_eq!(download(&alice_b, &one).await?, same);
    assert_eq!(download(&alice, &two).await?, same);
    // No temporary file is left in the shared directory.
    let leftovers: Vec<_> = std::fs::read_dir(&files)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[tokio::test]
async fn the_sdk_fails_over_to_another_node_and_its_stream_continues() -> Result<()> {
    use mqchat_e2e::sdk::{fast_reconnect, take};
    use mqchat_sdk::{Client, Recipient, Transport};

    let Some(db) = Database::fresh().await? else {
        return Ok(());
    };
    let mut a = db.node("a", &UNLIMITED).await?;
    let b = db.node("b", &UNLIMITED).await?;
    let (base_a, base_b) = (a.url(""), b.url(""));
    Client::register(&base_a, "alice", "password-alice").await?;
    Client::register(&base_a, "bob", "password-bob").await?;
    let alice = Client::builder(&base_a)
        .fallback(&base_b)
        .login("alice", "password-alice")
        .await?;
    let bob = Client::builder(&base_a)
        .fallback(&base_b)
        .login("bob", "password-bob")
        .await?;
    let to_bob = Recipient::User(bob.user_id());
    let nodes = [a.mqtt, b.mqtt].map(|m| Transport::Tcp(m.to_string()));
    let mut stream = bob.connect_any(nodes, fast_reconnect())?;
    for i in 0..5 {
        alice.send_text(to_bob, &format!("before {i}")).await?;
    }
    let before = take(&mut stream, 5, 0).await?;
    assert_eq!(
        before,
        (0..5).map(|i| format!("before {i}")).collect::<Vec<_>>()
    );

    // Node a dies; both clients carry on through node b with no new
    // configuration: alice's sends move there, bob's stream reconnects
    // there and syncs what it missed, then gets pushes from b.
    a.kill9().await?;
    for i in 0..20 {
        alice.send_text(to_bob, &format!("after {i}")).await?;
    }
    assert_eq!(alice.base_url(), base_b.trim_end_matches('/'));
    let after = take(&mut stream, 20, 5).await?;
    assert_eq!(
        after,
        (0..20).map(|i| format!("after {i}")).collect::<Vec<_>>()
    );
    // Nothing more: no duplicate trails behind.
    let extra = tokio::time::timeout(Duration::from_millis(500), stream.recv()).await;
    assert!(extra.is_err(), "unexpected extra event: {extra:?}");
    Ok(())
}

/// Reads `lines` until one starts with `want`; fails on `FAIL` or after 20 s.
async fn expect_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    want: &str,
) -> Result<String> {
    let wait = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            eprintln!("failover.mjs| {line}");
            ensure!(!line.starts_with("FAIL"), "{line}");
            if line.starts_with(want) {
                return Ok(line);
            }
        }
        anyhow::bail!("failover.mjs ended before {want}")
    });
    wait.await
        .map_err(|_| anyhow::anyhow!("no {want} from failover.mjs within 20 s"))?
}

#[tokio::test]
async fn the_js_sdk_fails_over_to_another_node_and_its_stream_continues() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    let browser_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    let node = std::process::Command::new("node").arg("--version").output();
    if node.is_err() || !browser_dir.join("node_modules/mqtt").exists() {
        ensure!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "node and tests/browser/node_modules (npm ci) are required in CI"
        );
        eprintln!("SKIPPED: node or tests/browser/node_modules (npm ci) missing");
        return Ok(());
    }
    let Some(db) = Database::fresh().await? else {
        return Ok(());
    };
    let mut a = db.node("a", &UNLIMITED).await?;
    let b = db.node("b", &UNLIMITED).await?;
    let alice = a.user("alice").await?;
    let bob = a.user("bob").await?;
    for i in 0..5 {
        alice
            .send_text(bob.id, &format!("before-{i}"), "hi")
            .await?;
    }
    let mut script = tokio::process::Command::new("node")
        .arg("failover.mjs")
        .args([&a.url(""), &b.url(""), "bob", "password-bob", "5", "10"])
        .current_dir(&browser_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = script.stdin.take().context("stdin")?;
    let stdout = script.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    expect_line(&mut lines, "READY").await?;
    a.kill9().await?;
    stdin.write_all(b"node a killed\n").await?;
    expect_line(&mut lines, "SENT?").await?;
    let alice_b = alice.via(&b);
    for i in 0..10 {
        let (status, m) = alice_b
            .send_text(bob.id, &format!("after-{i}"), "hi")
            .await?;
        ensure!(status == 200 || status == 201, "{status} {m}");
    }
    let pass = expect_line(&mut lines, "PASS").await?;
    assert!(pass.contains(&b.ws_url()), "{pass}");
    assert!(script.wait().await?.success());
    Ok(())
}
