//! PostgreSQL under several chatd processes and crashes (issue 22):
//!
//! - two chatd processes on one database, 32 senders on each, all sending
//!   to the same users and the same group, each process SIGKILLed and
//!   restarted several times: every acknowledged send is stored exactly
//!   once, each conversation's `seq` and each user's inbox `cursor` are
//!   gap-free, and each sender's messages are in the order they were sent;
//! - PostgreSQL stopped and started under load: sends answer 503 while it
//!   is down, then succeed again with no restart of chatd, and nothing
//!   acknowledged is lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mqchat_e2e::postgres::{node_flags, TestPostgres};
use mqchat_e2e::{eventually, TestServer, TestUser};
use serde_json::Value;
use tokio::sync::RwLock;

const SENDERS_PER_NODE: usize = 32;
const RECIPIENTS: usize = 4;

/// A chatd node on the shared database, restartable on the same ports.
struct Node {
    server: RwLock<TestServer>,
    dir: PathBuf,
    url: String,
}

impl Node {
    async fn start(dir: PathBuf, url: &str) -> Result<Node> {
        let server = TestServer::start_in(&dir, &node_flags(url)).await?;
        Ok(Node {
            server: RwLock::new(server),
            dir,
            url: url.to_owned(),
        })
    }

    /// SIGKILL, then a new process on the same data dir and ports.
    async fn crash_and_restart(&self) -> Result<()> {
        let mut server = self.server.write().await;
        let (http, mqtt) = (server.http.to_string(), server.mqtt.to_string());
        server.kill9().await?;
        *server = TestServer::start_at(&self.dir, &http, &mqtt, &node_flags(&self.url)).await?;
        Ok(())
    }
}

/// What a sender was told was stored: `(conversation, client_msg_id, id,
/// seq, target)` in send order; the target is `(group?, user or group id)`.
type Sent = (u64, String, u64, u64, (bool, u64));
type Acked = Vec<Sent>;

/// Sends until `stop`, retrying each message with the same
/// `client_msg_id` until it is acknowledged (the node may be down).
async fn sender(user: TestUser, targets: Vec<(bool, u64)>, stop: Arc<AtomicBool>) -> Result<Acked> {
    let mut acked = Acked::new();
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (group, to) = targets[k % targets.len()];
        let client_msg_id = format!("{}-{k}", user.name);
        let text = format!("{} #{k}", user.name);
        let mut tries = 0;
        let answer = loop {
            let res = if group {
                user.send_group(to, &client_msg_id, &text).await
            } else {
                user.send_text(to, &client_msg_id, &text).await
            };
            match res {
                Ok((s, v)) if s == 200 || s == 201 => break v,
                // Down, restarting, or answering 503: the same id again.
                Ok((s, _)) if s >= 500 => {}
                Ok((s, v)) => bail!("{client_msg_id}: {s} {v}"),
                Err(_) => {}
            }
            tries += 1;
            ensure!(tries < 600, "{client_msg_id}: never acknowledged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        acked.push((
            answer["conversation_id"]
                .as_u64()
                .context("conversation_id")?,
            client_msg_id,
            answer["id"].as_u64().context("id")?,
            answer["seq"].as_u64().context("seq")?,
            (group, to),
        ));
        k += 1;
    }
    Ok(acked)
}

/// Every message of a conversation, oldest first, through `user`.
async fn history(user: &TestUser, conversation: u64) -> Result<Vec<Value>> {
    let (s, page) = user
        .get(&format!(
            "/v1/conversations/{conversation}/messages?limit=100000"
        ))
        .await?;
    ensure!(s == 200, "history: {s} {page}");
    let mut messages = page["messages"].as_array().cloned().unwrap_or_default();
    let mut has_more = page["has_more"].as_bool().unwrap_or(false);
    while has_more {
        let before = messages
            .first()
            .and_then(|m| m["seq"].as_u64())
            .unwrap_or(0);
        let (s, page) = user
            .get(&format!(
                "/v1/conversations/{conversation}/messages?before_seq={before}&limit=1000"
            ))
            .await?;
        ensure!(s == 200, "history: {s} {page}");
        let mut older = page["messages"].as_array().cloned().unwrap_or_default();
        older.extend(messages);
        messages = older;
        has_more = page["has_more"].as_bool().unwrap_or(false);
    }
    Ok(messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sigkilled_in_turn_lose_nothing_acknowledged() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let url = pg.url();
    let tmp = tempfile::tempdir()?;
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = Arc::new(Node::start(dir_a, &url).await?);
    // Nodes of one deployment share the token secret.
    std::fs::create_dir_all(&dir_b)?;
    std::fs::copy(a.dir.join("jwt.secret"), dir_b.join("jwt.secret"))?;
    let b = Arc::new(Node::start(dir_b, &url).await?);

    let (owner, recipients, senders) = {
        let (sa, sb) = (a.server.read().await, b.server.read().await);
        let owner = sa.user("owner").await?;
        let mut recipients = Vec::new();
        for i in 0..RECIPIENTS {
            recipients.push(sa.user(&format!("rcpt{i}")).await?);
        }
        let names_a: Vec<String> = (0..SENDERS_PER_NODE).map(|i| format!("sa{i}")).collect();
        let names_b: Vec<String> = (0..SENDERS_PER_NODE).map(|i| format!("sb{i}")).collect();
        let mut senders = sa.accounts().users(&names_a, 8).await?;
        senders.extend(sb.accounts().users(&names_b, 8).await?);
        (owner, recipients, senders)
    };
    let mut members: Vec<u64> = recipients.iter().map(|u| u.id).collect();
    members.extend(senders.iter().map(|u| u.id));
    let (s, group) = owner
        .post(
            "/v1/groups",
            &serde_json::json!({"name": "all", "members": members}),
        )
        .await?;
    ensure!(s == 201, "group: {s} {group}");
    let group_id = group["id"].as_u64().context("group id")?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, user) in senders.into_iter().enumerate() {
        let mut targets: Vec<(bool, u64)> = recipients.iter().map(|r| (false, r.id)).collect();
        targets.push((true, group_id));
        let n = targets.len();
        targets.rotate_left(i % n);
        tasks.spawn(sender(user, targets, stop.clone()));
    }
    // Each node is SIGKILLed and restarted three times, in turn, under load.
    for round in 0..3 {
        for node in [&a, &b] {
            tokio::time::sleep(Duration::from_millis(700)).await;
            node.crash_and_restart()
                .await
                .with_context(|| format!("restart in round {round}"))?;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked: Vec<Acked> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        acked.push(r??);
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    ensure!(total > 500, "only {total} sends acknowledged");

    // Each conversation: seqs 1..=n without a gap; every acknowledged send
    // once, with the id and seq it was answered with; each sender's in order.
    let mut by_conversation: HashMap<u64, Vec<&Sent>> = HashMap::new();
    for sent in &acked {
        let mut last_seq: HashMap<u64, u64> = HashMap::new();
        for m in sent {
            let last = last_seq.entry(m.0).or_insert(0);
            ensure!(m.3 > *last, "a sender's messages out of order: {m:?}");
            *last = m.3;
            by_conversation.entry(m.0).or_default().push(m);
        }
    }
    for (conversation, sent) in &by_conversation {
        // The owner reads the group; each recipient their direct ones.
        let reader = match sent[0].4 {
            (true, _) => &owner,
            (false, to) => recipients
                .iter()
                .find(|r| r.id == to)
                .context("recipient")?,
        };
        let stored = history(reader, *conversation).await?;
        let seqs: Vec<u64> = stored.iter().filter_map(|m| m["seq"].as_u64()).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        ensure!(
            seqs == expected,
            "conversation {conversation}: seqs not 1..=n"
        );
        let mut count: HashMap<(u64, &str), usize> = HashMap::new();
        let mut ids: BTreeMap<u64, u64> = BTreeMap::new();
        for m in &stored {
            let key = (
                m["sender_id"].as_u64().unwrap_or(0),
                m["client_msg_id"].as_str().unwrap_or(""),
            );
            *count.entry(key).or_insert(0) += 1;
            ids.insert(
                m["id"].as_u64().unwrap_or(0),
                m["seq"].as_u64().unwrap_or(0),
            );
        }
        ensure!(count.values().all(|&n| n == 1), "a send stored twice");
        for m in sent {
            ensure!(
                ids.get(&m.2) == Some(&m.3),
                "conversation {conversation}: acknowledged {m:?} is not stored as answered"
            );
        }
    }
    // Each recipient's inbox: cursors 1..=n, every message once.
    let mut inbox_events = 0;
    for r in &recipients {
        let events = r.sync_all(0).await?;
        let cursors: Vec<u64> = events.iter().filter_map(|e| e["cursor"].as_u64()).collect();
        let expected: Vec<u64> = (1..=cursors.len() as u64).collect();
        ensure!(cursors == expected, "{}: inbox cursors not 1..=n", r.name);
        inbox_events += cursors.len();
        let mut seen = HashSet::new();
        for e in &events {
            if let Some(id) = e["message"]["id"].as_u64() {
                if e["type"] == "message" {
                    ensure!(seen.insert(id), "{}: message {id} twice", r.name);
                }
            }
        }
    }
    eprintln!(
        "{total} sends acknowledged by 2 nodes over 6 SIGKILLs, in {} conversations; \
         {inbox_events} inbox events for the {RECIPIENTS} recipients, gap-free",
        by_conversation.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_answers_503_then_recovers() -> Result<()> {
    let Some(mut pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let server = TestServer::start_with(&["--store", &pg.url()]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acked_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = tokio::spawn({
        let (stop, unavailable, acked_count) =
            (stop.clone(), unavailable.clone(), acked_count.clone());
        async move {
            let mut acked = Vec::new();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("m{k}");
                match alice.send_text(bob.id, &id, "hi").await? {
                    (201, v) | (200, v) => {
                        acked.push(v["id"].as_u64().unwrap_or(0));
                        acked_count.fetch_add(1, Ordering::Relaxed);
                        k += 1;
                    }
                    (503, v) => {
                        ensure!(
                            v["error"]["code"].is_string(),
                            "503 without an error body: {v}"
                        );
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    (s, v) => bail!("{s} {v}"),
                }
            }
            Ok::<_, anyhow::Error>((alice, acked))
        }
    });
    let acked_since = |n: usize| {
        let acked_count = acked_count.clone();
        move || {
            let now = acked_count.load(Ordering::Relaxed);
            async move { Ok((now > n).then_some(now)) }
        }
    };
    // Under load, then down until a send is refused, then back until sends
    // are acknowledged again, without restarting chatd.
    eventually(Duration::from_secs(10), acked_since(20)).await?;
    pg.stop().await?;
    eventually(Duration::from_secs(10), || {
        let n = unavailable.load(Ordering::Relaxed);
        async move { Ok((n > 0).then_some(())) }
    })
    .await
    .context("no 503 while the database was down")?;
    let while_down = acked_count.load(Ordering::Relaxed);
    pg.start().await?;
    eventually(Duration::from_secs(20), acked_since(while_down + 20))
        .await
        .context("sends not acknowledged again after the database came back")?;
    stop.store(true, Ordering::Relaxed);
    let (alice, acked) = load.await??;
    ensure!(
        unavailable.load(Ordering::Relaxed) > 0,
        "no 503 while the database was down"
    );
    let last = *acked.last().context("nothing acknowledged")?;
    // Sends after the restart were acknowledged, and every acknowledged
    // one is there.
    let conversation = {
        let (_, v) = alice.get("/v1/conversations").await?;
        v["conversations"][0]["id"]
            .as_u64()
            .context("conversation")?
    };
    let stored: HashSet<u64> = history(&alice, conversation)
        .await?
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    for id in &acked {
        ensure!(stored.contains(id), "acknowledged message {id} lost");
    }
    ensure!(stored.contains(&last));
    Ok(())
}

/// `chatd admin migrate` brings a fresh database to the schema alone;
/// `chatd admin backup` on PostgreSQL refuses and says to use `pg_dump`.
#[tokio::test]
async fn admin_migrate_works_and_backup_points_to_pg_dump() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let admin = |args: &[&str]| {
        std::process::Command::new(mqchat_e2e::chatd_bin().expect("chatd"))
            .arg("admin")
            .args(args)
            .args(["--store", &pg.url(), "--data-dir"])
            .arg(tmp.path())
            .env("RUST_LOG", "warn")
            .output()
    };
    let out = admin(&["migrate"])?;
    ensure!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin(&["backup", "/tmp/never-written.db"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "backup on PostgreSQL succeeded?");
    ensure!(
        err.contains("pg_dump") && err.contains("pg_restore"),
        "{err}"
    );
    ensure!(!std::path::Path::new("/tmp/never-written.db").exists());
    // And the migrated database serves a chatd at once.
    let server = TestServer::start_with(&["--store", &pg.url()]).await?;
    server.user("alice").await?;
    Ok(())
}
