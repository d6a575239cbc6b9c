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

use std::path::Path;

use anyhow::Result;
use mqchat_e2e::postgres::fresh_database;
use mqchat_e2e::TestServer;
use serde_json::json;

/// Two chatd nodes on one fresh database, each with a data dir of its own
/// under `dir` holding the same secrets (a token from one is good on the
/// other), started with `flags`; `None` when PostgreSQL is missing.
async fn two_nodes(dir: &Path, flags: &[&str]) -> Result<Option<[TestServer; 2]>> {
    let Some(url) = fresh_database().await? else {
        return Ok(None);
    };
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(flags);
    let a = TestServer::start_in(&dir.join("a"), &args).await?;
    std::fs::create_dir_all(dir.join("b"))?;
    for secret in ["jwt.secret", "admin.token"] {
        std::fs::copy(dir.join("a").join(secret), dir.join("b").join(secret))?;
    }
    let b = TestServer::start_in(&dir.join("b"), &args).await?;
    Ok(Some([a, b]))
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
    let tmp = tempfile::tempdir()?;
    let Some(nodes) = two_nodes(tmp.path(), &["--login-rate", "5", "--auth-ip-rate", "0"]).await?
    else {
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
    let tmp = tempfile::tempdir()?;
    let Some(nodes) = two_nodes(tmp.path(), &["--auth-ip-rate", "3"]).await? else {
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
    let tmp = tempfile::tempdir()?;
    let flags = [
        "--send-rate",
        "1",
        "--login-rate",
        "0",
        "--auth-ip-rate",
        "0",
    ];
    let Some(nodes) = two_nodes(tmp.path(), &flags).await? else {
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
