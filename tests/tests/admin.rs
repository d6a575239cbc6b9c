//! Operator tools: `chatd admin ...` and the `/admin` API.

use std::time::Duration;

use anyhow::{ensure, Result};
use mqchat_e2e::{chatd_bin, TestServer};
use serde_json::{json, Value};

/// Runs `chatd admin ARGS --data-dir DIR --http ADDR`; returns stdout.
async fn admin(server: &TestServer, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(chatd_bin()?)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--http", &server.http.to_string()])
        .args(server.store_args())
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "chatd admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test]
async fn create_user_reset_password_and_online() -> Result<()> {
    let server = TestServer::start().await?;
    let out = admin(
        &server,
        &["create-user", "carol", "--password", "carols-password"],
    )
    .await?;
    assert!(out.contains("created user carol"), "{out}");
    let carol = server.login("carol", "carols-password").await?;
    let mut carol_rx = server.mqtt(&carol).await?;

    let online: Value = serde_json::from_str(admin(&server, &["online"]).await?.trim())?;
    assert_eq!(online["user_ids"], json!([carol.id]));

    // A live reset ends every session at once, MQTT included.
    admin(
        &server,
        &[
            "reset-password",
            "carol",
            "--password",
            "a-new-password",
            "--live",
        ],
    )
    .await?;
    carol_rx.wait_closed(Duration::from_secs(3)).await?;
    let (s, _) = carol.get("/v1/me").await?;
    assert_eq!(s, 401, "old access token refused");
    assert!(server.login("carol", "carols-password").await.is_err());
    server.login("carol", "a-new-password").await?;
    Ok(())
}

#[tokio::test]
async fn admin_api_needs_the_admin_token() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    // A user's own token is not an admin token.
    let (s, body) = alice.get("/admin/online").await?;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let res = server
        .http_client
        .get(server.url("/admin/online"))
        .send()
        .await?;
    assert_eq!(res.status(), 401);
    let token = std::fs::read_to_string(server.data_dir().join("admin.token"))?;
    let res = server
        .http_client
        .post(server.url(&format!("/admin/users/{}/disconnect", alice.id)))
        .bearer_auth(token.trim())
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    Ok(())
}

#[tokio::test]
async fn online_backup_under_concurrent_writes_restores_consistently() -> Result<()> {
    if mqchat_e2e::postgres::suite_on_postgres() {
        eprintln!("SKIPPED: `chatd admin backup` is SQLite's (PostgreSQL: pg_dump, tests/tests/pg_nodes.rs)");
        return Ok(());
    }
    let server = TestServer::start_with(&["--send-rate", "0"]).await?;
    let bob = server.user("bob").await?;
    let mut senders = Vec::new();
    for i in 0..3 {
        senders.push(server.user(&format!("sender{i}")).await?);
    }
    let stop = stop_flag();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in senders.into_iter().enumerate() {
        let to = bob.id;
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.send_text(to, &format!("{i}-{n}"), "during backup")
                    .await?;
                n += 1;
            }
            Ok::<_, anyhow::Error>(n)
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tmp = tempfile::tempdir()?;
    let restored = tmp.path().join("restored");
    backup_into(&server, &restored).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    std::fs::copy(
        server.data_dir().join("jwt.secret"),
        restored.join("jwt.secret"),
    )?;

    // The restored copy is a consistent snapshot: every conversation's seq
    // and bob's cursors are gap-free, with fewer messages than were sent.
    let copy = TestServer::start_in(&restored, &[]).await?;
    let bob2 = copy.login("bob", "password-bob").await?;
    let events = bob2.sync_all(0).await?;
    assert!(
        !events.is_empty() && (events.len() as u32) < total,
        "{} of {total}",
        events.len()
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["cursor"], (i + 1) as u64);
    }
    let (_, list) = bob2.get("/v1/conversations").await?;
    for conv in list["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = conv["id"].as_u64().unwrap_or(0);
        let mut seqs = Vec::new();
        // The newest page first: ids and seqs stop at i64::MAX (a larger
        // before_seq is a 400).
        let mut before = i64::MAX as u64;
        loop {
            let (_, h) = bob2
                .get(&format!(
                    "/v1/conversations/{id}/messages?limit=500&before_seq={before}"
                ))
                .await?;
            let page: Vec<u64> = h["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap_or(0))
                .collect();
            before = page.first().copied().unwrap_or(0);
            seqs.splice(0..0, page);
            if h["has_more"] != true {
                break;
            }
        }
        assert_eq!(
            seqs,
            (1..=conv["last_seq"].as_u64().unwrap_or(0)).collect::<Vec<_>>(),
            "conversation {id}"
        );
    }
    Ok(())
}

/// `chatd admin backup` of `server` into `dir/chat.db`, `dir` created.
async fn backup_into(server: &TestServer, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("chat.db");
    admin(server, &["backup", file.to_str().unwrap_or_default()]).await?;
    Ok(())
}

fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// An older backup restored next to the same `jwt.secret`: access tokens
/// issued after the backup name sessions (and users) the restored store
/// does not have. They are refused, over HTTP and MQTT, even once a new
/// account gets the user id a lost one had; tokens from before the backup
/// still work.
#[tokio::test]
async fn tokens_from_after_a_restored_backup_are_refused() -> Result<()> {
    if mqchat_e2e::postgres::suite_on_postgres() {
        eprintln!("SKIPPED: `chatd admin backup` is SQLite's (PostgreSQL: pg_dump, tests/tests/pg_nodes.rs)");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let tmp = tempfile::tempdir()?;
    let restored = tmp.path().join("restored");
    backup_into(&server, &restored).await?;
    // After the backup: an account and a session the copy won't have.
    let lost = server.user("bob").await?;
    std::fs::copy(
        server.data_dir().join("jwt.secret"),
        restored.join("jwt.secret"),
    )?;

    let copy = TestServer::start_in(&restored, &[]).await?;
    let carol = copy.user("carol").await?;
    assert_eq!(carol.id, lost.id, "the new account gets the lost one's id");
    let (s, me) = carol.get("/v1/me").await?;
    assert_eq!((s, me["username"].as_str()), (200, Some("carol")));

    let mut alice_on_copy = carol.clone();
    alice_on_copy.access_token = alice.access_token.clone();
    let (s, me) = alice_on_copy.get("/v1/me").await?;
    assert_eq!((s, me["username"].as_str()), (200, Some("alice")), "{me}");

    let mut ghost = carol.clone();
    ghost.access_token = lost.access_token.clone();
    let (s, v) = ghost.get("/v1/me").await?;
    assert_eq!(s, 401, "a lost session's token acted as {v}");
    let (s, _) = ghost.send_text(alice.id, "ghost", "hi").await?;
    assert_eq!(s, 401);
    let refusal = copy
        .mqtt_refusal(&lost.id.to_string(), &lost.access_token)
        .await?;
    assert!(
        refusal.contains("BadUserNamePassword") || refusal.contains("NotAuthorized"),
        "{refusal}"
    );
    Ok(())
}
