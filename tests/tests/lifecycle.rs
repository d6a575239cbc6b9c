//! First run, restart and graceful shutdown of the chatd process.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::Result;
use mqchat_e2e::TestServer;

#[tokio::test]
async fn first_run_creates_the_data_dir_and_a_private_secret() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("nested/data");
    let server = TestServer::start_in(&dir, &[]).await?;
    if !mqchat_e2e::postgres::suite_on_postgres() {
        assert!(dir.join("chat.db").exists());
    }
    let mode = std::fs::metadata(dir.join("jwt.secret"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "jwt.secret must be owner-only");
    let alice = server.user("alice").await?;
    drop(server);

    // Restart: same secret, so tokens issued before still work.
    let server = TestServer::start_in(&dir, &[]).await?;
    let res = server
        .http_client
        .get(server.url("/v1/me"))
        .bearer_auth(&alice.access_token)
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_closes_clients_and_checkpoints() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let mut server = TestServer::start_in(&dir, &[]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut bob_mqtt = server.mqtt(&bob).await?;
    for i in 0..20 {
        let (s, _) = alice
            .send_text(bob.id, &format!("m{i}"), "before shutdown")
            .await?;
        assert_eq!(s, 201);
    }
    let started = Instant::now();
    let status = server.terminate().await?;
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    bob_mqtt.wait_closed(Duration::from_secs(2)).await?;
    let logs = server.logs().join("\n");
    assert!(
        logs.contains("chatd stopped"),
        "no clean stop in the log:\n{logs}"
    );
    // The WAL was checkpointed into the database file.
    let wal = dir.join("chat.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal)?.len() == 0,
        "WAL not checkpointed"
    );

    let server = TestServer::start_in(&dir, &[]).await?;
    let bob = server.login("bob", "password-bob").await?;
    assert_eq!(bob.sync_all(0).await?.len(), 20);
    Ok(())
}

#[tokio::test]
async fn health_and_prometheus_metrics() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let _bob_mqtt = server.mqtt(&bob).await?;
    alice.send_text(bob.id, "m1", "counted").await?;
    let health: serde_json::Value = server
        .http_client
        .get(server.url("/healthz"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mqtt_connections"], 1);
    let res = server
        .http_client
        .get(server.url("/metrics"))
        .send()
        .await?;
    assert!(res.headers()["content-type"]
        .to_str()?
        .starts_with("text/plain"));
    let text = res.text().await?;
    for needle in [
        "mqchat_http_request_duration_seconds_bucket{",
        "route=\"/v1/messages\"",
        "mqchat_store_commit_seconds_bucket",
        "mqchat_messages_accepted_total{created=\"true\"} 1",
        "mqchat_events_pushed_total 1",
        "mqchat_mqtt_connections 1",
        "mqchat_mqtt_subscriptions 1",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn settings_from_a_toml_file_flags_win() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("chatd.toml");
    std::fs::write(
        &file,
        "dm_policy = \"friends\"\nmax-group-size = 2\nsend_rate = 1\n",
    )?;
    let config = format!("--config={}", file.display());
    // The file says send_rate = 1; the flag says unlimited, and wins.
    let server = TestServer::start_with(&[&config, "--send-rate", "0"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (s, _) = alice.send_text(bob.id, "x", "hi").await?;
    assert_eq!(s, 403, "dm_policy = friends from the file");
    alice.befriend(&bob).await?;
    for i in 0..15 {
        let (s, _) = alice.send_text(bob.id, &format!("m{i}"), "fast").await?;
        assert_eq!(s, 201, "the --send-rate flag overrides the file");
    }
    let carol = server.user("carol").await?;
    let (s, _) = alice
        .post(
            "/v1/groups",
            &serde_json::json!({"name": "g", "members": [bob.id, carol.id]}),
        )
        .await?;
    assert_eq!(s, 400, "max-group-size = 2 from the file");

    std::fs::write(&file, "no_such_setting = 1\n")?;
    let err = TestServer::start_with(&[&config])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("before listening"), "{err}");
    Ok(())
}
