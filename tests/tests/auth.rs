//! Sessions: logout ends MQTT connections, tokens rotate, reuse is caught.

use std::time::Duration;

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::json;

#[tokio::test]
async fn logout_disconnects_the_sessions_mqtt_connections() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;
    // A second login of bob: another device, another session.
    let bob_tablet = server.login("bob", "password-bob").await?;
    let mut phone = server.mqtt(&bob).await?;
    let mut tablet = server.mqtt(&bob_tablet).await?;

    let (status, _) = bob.post("/v1/auth/logout", &json!({})).await?;
    assert_eq!(status, 204);
    phone.wait_closed(Duration::from_secs(3)).await?;
    // The other session is untouched.
    assert!(tablet.next(Duration::from_millis(300)).await?.is_none());

    // The logged-out session's access token is dead everywhere.
    let (status, body) = bob.get("/v1/me").await?;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_token");
    let err = server
        .mqtt_refusal(&bob.id.to_string(), &bob.access_token)
        .await?;
    assert!(err.contains("BadUserNamePassword"), "{err}");
    // And its refresh token.
    let res = server
        .http_client
        .post(server.url("/v1/auth/refresh"))
        .json(&json!({"refresh_token": bob.refresh_token}))
        .send()
        .await?;
    assert_eq!(res.status(), 401);

    // Logout everywhere closes the remaining session too.
    let (status, _) = bob_tablet
        .post("/v1/auth/logout", &json!({"everywhere": true}))
        .await?;
    assert_eq!(status, 204);
    tablet.wait_closed(Duration::from_secs(3)).await?;
    Ok(())
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let refresh = |token: String| {
        let server = &server;
        async move {
            let res = server
                .http_client
                .post(server.url("/v1/auth/refresh"))
                .json(&json!({"refresh_token": token}))
                .send()
                .await?;
            let status = res.status().as_u16();
            Ok::<_, anyhow::Error>((status, res.json::<serde_json::Value>().await?))
        }
    };
    let (status, first) = refresh(alice.refresh_token.clone()).await?;
    assert_eq!(status, 200, "{first}");
    assert_ne!(first["refresh_token"], alice.refresh_token.as_str());
    assert_eq!(first["user"]["id"], alice.id);
    let new_access = first["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let res = server
        .http_client
        .get(server.url("/v1/me"))
        .bearer_auth(&new_access)
        .send()
        .await?;
    assert_eq!(res.status(), 200);

    // The old refresh token again: treated as stolen, the session dies.
    let (status, body) = refresh(alice.refresh_token.clone()).await?;
    assert_eq!(status, 401, "{body}");
    let res = server
        .http_client
        .get(server.url("/v1/me"))
        .bearer_auth(&new_access)
        .send()
        .await?;
    assert_eq!(
        res.status(),
        401,
        "access tokens of a revoked session are refused"
    );
    let (status, _) = refresh(
        first["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
    .await?;
    assert_eq!(status, 401, "the rotated-to token died with its session");
    Ok(())
}

#[tokio::test]
async fn login_failures_do_not_reveal_which_part_was_wrong() -> Result<()> {
    let server = TestServer::start().await?;
    server.user("alice").await?;
    for (user, pass) in [("alice", "wrong-password"), ("nobody", "password-alice")] {
        let res = server
            .http_client
            .post(server.url("/v1/auth/login"))
            .json(&json!({"username": user, "password": pass}))
            .send()
            .await?;
        assert_eq!(res.status(), 401);
        let body: serde_json::Value = res.json().await?;
        assert_eq!(body["error"]["code"], "invalid_credentials");
    }
    Ok(())
}

#[tokio::test]
async fn expired_access_tokens_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = TestServer::start_in(&tmp.path().join("d"), &["--access-token-ttl", "1"]).await?;
    let alice = server.user("alice").await?;
    // exp is iat + 1 s (whole seconds) and validation allows 1 s of slack.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, body) = alice.get("/v1/me").await?;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_expired");
    let err = server
        .mqtt_refusal(&alice.id.to_string(), &alice.access_token)
        .await?;
    assert!(err.contains("BadUserNamePassword"), "{err}");
    Ok(())
}
