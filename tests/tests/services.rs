//! Service accounts: third-party services send over HTTP with an API key.

use anyhow::{anyhow, Result};
use mqchat_e2e::{chatd_bin, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

async fn as_key(
    server: &TestServer,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = server
        .http_client
        .request(method, server.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_service_sends_as_its_bot_within_its_scopes() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut alice_rx = server.mqtt(&alice).await?;
    let (s, svc) = server
        .admin_post(
            "/admin/services",
            json!({"username": "weather-bot", "scopes": ["send"], "rate_per_sec": 0}),
        )
        .await?;
    assert_eq!(s, 201, "{svc}");
    let key = svc["key"]
        .as_str()
        .ok_or_else(|| anyhow!("no key"))?
        .to_owned();
    assert!(key.starts_with("mqk_"));
    let bot = svc["user"]["id"].as_u64().unwrap_or(0);

    let send =
        json!({"to": {"user": alice.id}, "client_msg_id": "w1", "body": {"text": "rain at 5"}});
    let (s, m) = as_key(
        &server,
        &key,
        reqwest::Method::POST,
        "/v1/messages",
        Some(send.clone()),
    )
    .await?;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["sender_id"], bot);
    let pushed = alice_rx
        .next_of_type("message.created", Duration::from_secs(2))
        .await?
        .ok_or_else(|| anyhow!("no push"))?;
    assert_eq!(pushed["message"], m);
    // Idempotent like any send.
    let (s, again) = as_key(
        &server,
        &key,
        reqwest::Method::POST,
        "/v1/messages",
        Some(send),
    )
    .await?;
    assert_eq!((s, &again), (200, &m));

    // In batches too, each send within the key's scopes: a notice without
    // the notice scope is refused on its own.
    let (s, answer) = as_key(
        &server,
        &key,
        reqwest::Method::POST,
        "/v1/messages/batch",
        Some(json!({"messages": [
            {"to": {"user": alice.id}, "client_msg_id": "w2", "body": {"text": "sun at 6"}},
            {"to": {"user": alice.id}, "client_msg_id": "n0", "body": {"notice": {"text": "maintenance"}}},
            {"to": {"user": alice.id}, "client_msg_id": "w1", "body": {"text": "rain at 5"}},
        ]})),
    )
    .await?;
    assert_eq!(s, 200, "{answer}");
    let statuses: Vec<u64> = answer["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["status"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, vec![201, 403, 200], "{answer}");
    assert_eq!(answer["results"][0]["message"]["sender_id"], bot);
    assert_eq!(answer["results"][2]["message"], m);
    let pushed = alice_rx
        .next_of_type("message.created", Duration::from_secs(2))
        .await?
        .ok_or_else(|| anyhow!("no push of the batch"))?;
    assert_eq!(pushed["message"], answer["results"][0]["message"]);

    // Only the sending endpoints.
    let (s, body) = as_key(&server, &key, reqwest::Method::GET, "/v1/friends", None).await?;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (s, _) = as_key(&server, &key, reqwest::Method::GET, "/v1/me", None).await?;
    assert_eq!(s, 200);
    // Reading users, yes; changing its own profile, no (same path, other
    // method); a key that is no key is a 401 on any route.
    let alice_path = format!("/v1/users/{}", alice.id);
    for (method, path, status) in [
        (reqwest::Method::GET, alice_path.as_str(), 200),
        (reqwest::Method::GET, "/v1/users?username=alice", 200),
        (reqwest::Method::PATCH, "/v1/me", 403),
        (reqwest::Method::GET, "/v1/sync", 403),
    ] {
        let body = (method == reqwest::Method::PATCH).then(|| json!({"display_name": "x"}));
        let (s, answer) = as_key(&server, &key, method.clone(), path, body).await?;
        assert_eq!(s, status, "{method} {path}: {answer}");
    }
    for path in ["/v1/friends", "/v1/me"] {
        let (s, answer) =
            as_key(&server, "mqk_not-a-key", reqwest::Method::GET, path, None).await?;
        assert_eq!(
            (s, answer["error"]["code"].as_str()),
            (401, Some("invalid_token")),
            "{path}"
        );
    }
    // No notices without the notice scope; users can't send notices at all.
    let notice = json!({"to": {"user": alice.id}, "client_msg_id": "n1", "body": {"notice": {"text": "maintenance"}}});
    let (s, _) = as_key(
        &server,
        &key,
        reqwest::Method::POST,
        "/v1/messages",
        Some(notice.clone()),
    )
    .await?;
    assert_eq!(s, 403);
    let (s, _) = alice.post("/v1/messages", &notice).await?;
    assert_eq!(s, 400);
    // The bot can't log in with a password.
    assert!(server.login("weather-bot", "!").await.is_err());

    // Revoked: refused at once.
    let (s, _) = server
        .admin_post(
            &format!("/admin/services/{}/revoke", svc["key_id"]),
            json!({}),
        )
        .await?;
    assert_eq!(s, 204);
    let (s, body) = as_key(&server, &key, reqwest::Method::GET, "/v1/me", None).await?;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    Ok(())
}

#[tokio::test]
async fn keys_have_their_own_rate_limit_and_the_cli_makes_them() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let out = tokio::process::Command::new(chatd_bin()?)
        .args([
            "admin",
            "create-service",
            "alerts",
            "--scopes",
            "send,notice",
            "--rate",
            "1",
            "--data-dir",
        ])
        .arg(server.data_dir())
        .args(server.store_args())
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .ok_or_else(|| anyhow!("no key in {stdout}"))?
        .to_owned();
    let mut statuses = Vec::new();
    for i in 0..3 {
        let body = json!({"to": {"user": alice.id}, "client_msg_id": format!("a{i}"), "body": {"notice": {"text": "disk almost full"}}});
        statuses.push(
            as_key(
                &server,
                &key,
                reqwest::Method::POST,
                "/v1/messages",
                Some(body),
            )
            .await?
            .0,
        );
    }
    assert_eq!(statuses, [201, 201, 429], "rate 1/s with bursts of 2 s");
    Ok(())
}
