//! Handler tests: the axum router driven in-process with `oneshot`, over a
//! real SQLite file and a real (in-process) broker.

mod common;

use common::{app, App};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn call(
    app: &App,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), Box<dyn std::error::Error>> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&b)?))?,
        None => req.body(Body::empty())?,
    };
    let res = app.router.clone().oneshot(req).await?;
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok((status, value))
}

#[tokio::test]
async fn register_login_send_sync() -> TestResult {
    let app = app()?;
    for name in ["alice", "bob"] {
        let (s, user) = call(
            &app,
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": name, "password": "12345678"})),
        )
        .await?;
        assert_eq!(s, StatusCode::CREATED, "{user}");
    }
    let (s, grant) = call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({"username": "alice", "password": "12345678"})),
    )
    .await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(grant["token_type"], "Bearer");
    let token = grant["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let send = json!({"to": {"user": 2}, "client_msg_id": "c1", "body": {"text": "hi"}});
    let (s, m) = call(
        &app,
        "POST",
        "/v1/messages",
        Some(&token),
        Some(send.clone()),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (m["seq"].as_u64(), m["sender_id"].as_u64()),
        (Some(1), Some(1))
    );
    let (s, again) = call(&app, "POST", "/v1/messages", Some(&token), Some(send)).await?;
    assert_eq!((s, &again), (StatusCode::OK, &m));
    let (s, page) = call(&app, "GET", "/v1/sync?after=0", Some(&token), None).await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["cursor"], 1, "the sender's own inbox has it too");
    Ok(())
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() -> TestResult {
    let app = app()?;
    let (s, v) = call(&app, "GET", "/v1/me", None, None).await?;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );
    let (s, v) = call(&app, "GET", "/v1/me", Some("x.y.z"), None).await?;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
    let (s, v) = call(&app, "GET", "/nowhere", None, None).await?;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({"username": "x"})),
    )
    .await?;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (s, v) = call(&app, "GET", "/healthz", None, None).await?;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    Ok(())
}

/// Registers `name` and logs in; the access token.
async fn user_token(app: &App, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    let credentials = json!({"username": name, "password": "12345678"});
    let (s, _) = call(
        app,
        "POST",
        "/v1/auth/register",
        None,
        Some(credentials.clone()),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED);
    let (_, grant) = call(app, "POST", "/v1/auth/login", None, Some(credentials)).await?;
    Ok(grant["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// What schemathesis found (`.ci/schemathesis`): ids, cursors and seqs past
/// i64::MAX (the documented int64) and a NUL in a search were 500s.
#[tokio::test]
async fn out_of_range_ids_and_nul_searches_are_client_errors() -> TestResult {
    let app = app()?;
    let token = &user_token(&app, "alice").await?;
    let big = "9223372036854775808";
    for (method, uri) in [
        ("GET", format!("/v1/users/{big}")),
        ("DELETE", format!("/v1/messages/{big}")),
        ("GET", format!("/v1/groups/{big}")),
        ("POST", format!("/v1/friends/requests/{big}/accept")),
        ("DELETE", format!("/v1/groups/1/members/{big}")),
    ] {
        let (s, v) = call(&app, method, &uri, Some(token), None).await?;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {uri}: {v}");
    }
    for (uri, body) in [
        ("/v1/blocks", json!({"user_id": 9223372036854775808u64})),
        (
            "/v1/friends/requests",
            json!({"user_id": 9223372036854775808u64}),
        ),
        (
            "/v1/groups",
            json!({"name": "g", "members": [9223372036854775808u64]}),
        ),
        (
            "/v1/sync/ack",
            json!({"device_id": "d", "cursor": 9223372036854775808u64}),
        ),
        (
            "/v1/messages",
            json!({"to": {"user": 9223372036854775808u64}, "client_msg_id": "c", "body": {"text": "x"}}),
        ),
    ] {
        let (s, v) = call(&app, "POST", uri, Some(token), Some(body)).await?;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{uri}: {v}"
        );
    }
    for uri in [
        format!("/v1/sync?after={big}"),
        format!("/v1/conversations/1/messages?before_seq={big}"),
        format!("/v1/presence?users=1,{big}"),
        "/v1/search?q=a%00b".to_owned(),
    ] {
        let (s, v) = call(&app, "GET", &uri, Some(token), None).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
    }
    // The largest int64 is an ordinary id that names nothing.
    let (s, _) = call(
        &app,
        "GET",
        "/v1/users/9223372036854775807",
        Some(token),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    Ok(())
}
