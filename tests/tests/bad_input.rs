//! Bad HTTP input gets the right status and a JSON error body, and loses
//! nothing already accepted.

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::{json, Value};

async fn raw(
    server: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Value)> {
    let mut req = server
        .http_client
        .request(method.parse()?, server.url(path))
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let text = res.text().await?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{status}: body is not JSON ({e}): {text:?}"))?;
    Ok((status, v))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn malformed_and_invalid_sends() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let t = Some(alice.access_token.as_str());
    let json_ct = Some("application/json");
    let send = |body: Value| serde_json::to_vec(&body).unwrap_or_default();

    let (s, _) = alice
        .send_text(bob.id, "kept", "accepted before the bad ones")
        .await?;
    assert_eq!(s, 201);

    // (case, request body, content type, expected status, expected code)
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            b"{\"to\":".to_vec(),
            json_ct,
            400,
            "malformed_json",
        ),
        (
            "not an object",
            b"[1,2]".to_vec(),
            json_ct,
            400,
            "malformed_json",
        ),
        (
            "missing client_msg_id",
            send(json!({"to": {"user": bob.id}, "body": {"text": "x"}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "missing body",
            send(json!({"to": {"user": bob.id}, "client_msg_id": "a"})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "missing to",
            send(json!({"client_msg_id": "a", "body": {"text": "x"}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            send(
                json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {"text": "x"}, "extra": 1}),
            ),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "wrong type",
            send(json!({"to": {"user": "bob"}, "client_msg_id": "a", "body": {"text": "x"}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "huge number",
            br#"{"to":{"user":99999999999999999999999},"client_msg_id":"a","body":{"text":"x"}}"#
                .to_vec(),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "negative id",
            send(json!({"to": {"user": -1}, "client_msg_id": "a", "body": {"text": "x"}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "empty client_msg_id",
            send(json!({"to": {"user": bob.id}, "client_msg_id": "", "body": {"text": "x"}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "long client_msg_id",
            send(
                json!({"to": {"user": bob.id}, "client_msg_id": "x".repeat(65), "body": {"text": "x"}}),
            ),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "body not an object",
            send(json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": "hi"})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "empty body",
            send(json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "text not a string",
            send(json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {"text": 5}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "empty text",
            send(json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {"text": ""}})),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "text too long",
            send(
                json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {"text": "x".repeat(4001)}}),
            ),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "body too large",
            send(
                json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {"data": "x".repeat(20_000)}}),
            ),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "request too large",
            send(
                json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {"data": "x".repeat(100_000)}}),
            ),
            json_ct,
            413,
            "payload_too_large",
        ),
        (
            "unknown recipient",
            send(json!({"to": {"user": 424242}, "client_msg_id": "a", "body": {"text": "x"}})),
            json_ct,
            404,
            "not_found",
        ),
        (
            "unknown group",
            send(json!({"to": {"group": 1}, "client_msg_id": "a", "body": {"text": "x"}})),
            json_ct,
            404,
            "not_found",
        ),
        (
            "no content type",
            send(json!({"to": {"user": bob.id}, "client_msg_id": "a", "body": {"text": "x"}})),
            None,
            415,
            "unsupported_media_type",
        ),
        (
            "invalid UTF-8",
            b"{\"to\":{\"user\":2},\"client_msg_id\":\"\xff\xfe\",\"body\":{\"text\":\"x\"}}"
                .to_vec(),
            json_ct,
            400,
            "malformed_json",
        ),
    ];
    for (name, body, ctype, want_status, want_code) in cases {
        let (status, v) = raw(&server, t, "POST", "/v1/messages", ctype, body).await?;
        assert_eq!((status, code(&v)), (want_status, want_code), "{name}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: no message"
        );
    }

    // Nothing was lost and nothing extra was stored.
    let events = bob.sync_all(0).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["message"]["client_msg_id"], "kept");
    Ok(())
}

#[tokio::test]
async fn auth_errors() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let body = serde_json::to_vec(
        &json!({"to": {"user": alice.id}, "client_msg_id": "a", "body": {"text": "x"}}),
    )?;
    let ct = Some("application/json");
    let (s, v) = raw(&server, None, "POST", "/v1/messages", ct, body.clone()).await?;
    assert_eq!((s, code(&v)), (401, "missing_token"));
    let (s, v) = raw(
        &server,
        Some("garbage"),
        "POST",
        "/v1/messages",
        ct,
        body.clone(),
    )
    .await?;
    assert_eq!((s, code(&v)), (401, "invalid_token"));
    // alg=none token claiming to be alice.
    let forged = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwic2lkIjoxLCJpYXQiOjAsImV4cCI6OTk5OTk5OTk5OX0.";
    let (s, v) = raw(&server, Some(forged), "GET", "/v1/me", None, vec![]).await?;
    assert_eq!((s, code(&v)), (401, "invalid_token"));
    Ok(())
}

#[tokio::test]
async fn registration_rules() -> Result<()> {
    let server = TestServer::start().await?;
    let ct = Some("application/json");
    let reg = |u: &str, p: &str| {
        serde_json::to_vec(&json!({"username": u, "password": p})).unwrap_or_default()
    };
    for (u, p, status, c) in [
        ("ab", "password1", 400, "invalid_username"),
        ("has space", "password1", 400, "invalid_username"),
        (&*"x".repeat(33), "password1", 400, "invalid_username"),
        ("valid_name", "short", 400, "weak_password"),
        ("valid.name-1", "longenough", 201, ""),
        ("VALID.NAME-1", "longenough", 409, "username_taken"),
    ] {
        let (s, v) = raw(&server, None, "POST", "/v1/auth/register", ct, reg(u, p)).await?;
        assert_eq!(s, status, "{u}: {v}");
        if status != 201 {
            assert_eq!(code(&v), c, "{u}");
        } else {
            assert_eq!(v["username"], "valid.name-1");
        }
    }
    Ok(())
}

#[tokio::test]
async fn unknown_routes_methods_and_bad_params() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let t = Some(alice.access_token.as_str());
    let (s, v) = raw(&server, t, "GET", "/v1/nope", None, vec![]).await?;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, v) = raw(&server, t, "DELETE", "/v1/messages", None, vec![]).await?;
    assert_eq!((s, code(&v)), (405, "method_not_allowed"));
    let (s, v) = raw(&server, t, "GET", "/v1/sync?after=-1", None, vec![]).await?;
    assert_eq!((s, code(&v)), (400, "invalid_request"));
    let (s, v) = raw(&server, t, "GET", "/v1/sync?after=abc", None, vec![]).await?;
    assert_eq!((s, code(&v)), (400, "invalid_request"));
    let (s, v) = raw(&server, t, "GET", "/v1/users/not-a-number", None, vec![]).await?;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, v) = raw(
        &server,
        t,
        "GET",
        "/v1/conversations/1/messages?limit=x",
        None,
        vec![],
    )
    .await?;
    assert_eq!((s, code(&v)), (400, "invalid_request"));
    let (s, _) = raw(&server, t, "GET", "/healthz", None, vec![]).await?;
    assert_eq!(s, 200);
    Ok(())
}

/// Every endpoint that takes an id answers a well-formed one that names
/// nothing with a JSON 4xx (never a 5xx, which is what a foreign key
/// catching it would give), and stores nothing.
#[tokio::test]
async fn ids_that_name_nothing_get_not_found_and_store_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    const NOBODY: u64 = 424_242;
    let (s, group) = alice
        .post("/v1/groups", &json!({"name": "real", "members": [bob.id]}))
        .await?;
    assert_eq!(s, 201, "{group}");
    let g = group["id"].as_u64().unwrap_or(0);
    let (s, sent) = alice.send_text(bob.id, "kept", "hello").await?;
    assert_eq!(s, 201);
    assert!(sent["id"].is_u64(), "{sent}");
    let bobs = bob.synced_message_ids().await?;

    let cases: Vec<(&str, &str, String, Value, u16)> = vec![
        (
            "group with an unknown member",
            "POST",
            "/v1/groups".into(),
            json!({"name": "g", "members": [bob.id, NOBODY]}),
            404,
        ),
        (
            "add an unknown member",
            "POST",
            format!("/v1/groups/{g}/members"),
            json!({"user_ids": [NOBODY]}),
            404,
        ),
        (
            "members of an unknown group",
            "POST",
            format!("/v1/groups/{NOBODY}/members"),
            json!({"user_ids": [bob.id]}),
            404,
        ),
        (
            "transfer to an unknown user",
            "POST",
            format!("/v1/groups/{g}/transfer"),
            json!({"user_id": NOBODY}),
            404,
        ),
        (
            "role of an unknown user",
            "PUT",
            format!("/v1/groups/{g}/members/{NOBODY}/role"),
            json!({"role": "admin"}),
            404,
        ),
        (
            "block an unknown user",
            "POST",
            "/v1/blocks".into(),
            json!({"user_id": NOBODY}),
            404,
        ),
        (
            "befriend an unknown user",
            "POST",
            "/v1/friends/requests".into(),
            json!({"user_id": NOBODY}),
            404,
        ),
        (
            "accept an unknown request",
            "POST",
            format!("/v1/friends/requests/{NOBODY}/accept"),
            json!({}),
            404,
        ),
        (
            "reject an unknown request",
            "POST",
            format!("/v1/friends/requests/{NOBODY}/reject"),
            json!({}),
            404,
        ),
        (
            "cancel an unknown request",
            "POST",
            format!("/v1/friends/requests/{NOBODY}/cancel"),
            json!({}),
            404,
        ),
        (
            "edit an unknown message",
            "PATCH",
            format!("/v1/messages/{NOBODY}"),
            json!({"body": {"text": "x"}}),
            404,
        ),
        (
            "recall an unknown message",
            "POST",
            format!("/v1/messages/{NOBODY}/recall"),
            json!({}),
            404,
        ),
        (
            "read an unknown conversation",
            "POST",
            format!("/v1/conversations/{NOBODY}/read"),
            json!({"seq": 1}),
            404,
        ),
        (
            "a file that was never uploaded",
            "POST",
            "/v1/messages".into(),
            json!({"to": {"user": bob.id}, "client_msg_id": "f", "body": {"file": {"id": "0123456789abcdef0123456789abcdef"}}}),
            400,
        ),
    ];
    for (name, method, path, body, want) in cases {
        let (status, v) = match method {
            "POST" => alice.post(&path, &body).await?,
            "PUT" => alice.put(&path, &body).await?,
            "PATCH" => alice.patch(&path, &body).await?,
            _ => unreachable!(),
        };
        assert_eq!(status, want, "{name}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {v}"
        );
    }
    let (s, v) = alice.delete(&format!("/v1/messages/{NOBODY}")).await?;
    assert_eq!(s, 404, "hide an unknown message: {v}");

    // Nothing was stored: still one group of two, no block, no request, no
    // new message.
    let (_, groups) = alice.get("/v1/groups").await?;
    assert_eq!(
        groups["groups"].as_array().map(Vec::len),
        Some(1),
        "{groups}"
    );
    let (_, members) = alice.get(&format!("/v1/groups/{g}")).await?;
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(2),
        "{members}"
    );
    let (_, blocks) = alice.get("/v1/blocks").await?;
    assert_eq!(
        blocks["user_ids"].as_array().map(Vec::len),
        Some(0),
        "{blocks}"
    );
    let (_, requests) = alice.get("/v1/friends/requests?direction=outgoing").await?;
    assert_eq!(
        requests["requests"].as_array().map(Vec::len),
        Some(0),
        "{requests}"
    );
    assert_eq!(bob.synced_message_ids().await?, bobs);
    Ok(())
}
