//! Rate limits: login brute force (per account, per address) and sends.

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::json;

#[tokio::test]
async fn login_brute_force_is_limited_per_account() -> Result<()> {
    let server = TestServer::start_with(&["--login-rate", "5", "--auth-ip-rate", "0"]).await?;
    server.user("alice").await?; // one login used
    server.user("bob").await?;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..6 {
        let res = server
            .http_client
            .post(server.url("/v1/auth/login"))
            .json(&json!({"username": "alice", "password": format!("guess-{i}")}))
            .send()
            .await?;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: serde_json::Value = res.json().await?;
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429]);
    assert!(
        retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "Retry-After: {retry_after:?}"
    );
    // Even the right password waits: the limit is on attempts.
    let res = server
        .http_client
        .post(server.url("/v1/auth/login"))
        .json(&json!({"username": "alice", "password": "password-alice"}))
        .send()
        .await?;
    assert_eq!(res.status(), 429);
    // Other accounts are unaffected.
    server.login("bob", "password-bob").await?;
    Ok(())
}

#[tokio::test]
async fn auth_is_limited_per_address() -> Result<()> {
    let server = TestServer::start_with(&["--auth-ip-rate", "3"]).await?;
    let mut statuses = Vec::new();
    for name in ["aaa", "bbb", "ccc", "ddd"] {
        let res = server
            .http_client
            .post(server.url("/v1/auth/register"))
            .json(&json!({"username": name, "password": "password-x"}))
            .send()
            .await?;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    Ok(())
}

#[tokio::test]
async fn sends_are_limited_per_user() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "1"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for i in 0..15 {
        let (s, _) = alice.send_text(bob.id, &format!("r{i}"), "spam").await?;
        statuses.push(s);
    }
    // A burst of 10 s worth, plus at most one more per second the loop took.
    let ok = statuses.iter().filter(|&&s| s == 201).count();
    let slack = started.elapsed().as_secs() as usize + 1;
    assert!((10..=10 + slack).contains(&ok), "{ok} sent: {statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let (s, _) = bob.send_text(alice.id, "b1", "I'm fine").await?;
    assert_eq!(s, 201, "per user");
    assert_eq!(
        bob.sync_all(0).await?.len(),
        11,
        "refused sends stored nothing"
    );
    Ok(())
}
