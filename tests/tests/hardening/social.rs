//! Signed-in users who flood, lock others out, or detect blocks.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Result;
use mqchat_e2e::{TestServer, TestUser};
use serde_json::{json, Value};

/// An HTTP client whose connections come from `ip` (any 127.0.0.0/8
/// address reaches chatd on loopback), to play clients at other addresses.
fn client_from(ip: [u8; 4]) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .timeout(Duration::from_secs(20))
        .build()?)
}

/// `POST path` with a JSON body from `client`: the status and body.
async fn post_from(
    client: &reqwest::Client,
    server: &TestServer,
    path: &str,
    body: &Value,
) -> Result<(u16, Value)> {
    let res = client.post(server.url(path)).json(body).send().await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn login_from(
    client: &reqwest::Client,
    server: &TestServer,
    name: &str,
    password: &str,
) -> Result<u16> {
    let body = json!({"username": name, "password": password});
    Ok(post_from(client, server, "/v1/auth/login", &body).await?.0)
}

// Item 11: anyone could lock an account out; rotating addresses defeated
// the per-address limit.

#[tokio::test]
async fn wrong_passwords_from_elsewhere_do_not_lock_the_owner_out() -> Result<()> {
    let server = TestServer::start().await?;
    server.user("carol").await?;
    let attacker = client_from([127, 0, 1, 66])?;
    let mut statuses = Vec::new();
    for i in 0..15 {
        statuses.push(login_from(&attacker, &server, "carol", &format!("guess-{i}")).await?);
    }
    assert_eq!(&statuses[..10], [401; 10], "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|&s| s == 429),
        "the guesser slows down: {statuses:?}"
    );
    // The owner, from another /24, still gets in at once.
    let owner = client_from([127, 0, 2, 10])?;
    let started = Instant::now();
    assert_eq!(
        login_from(&owner, &server, "carol", "password-carol").await?,
        200
    );
    eprintln!("owner's login after 15 guesses: {:?}", started.elapsed());
    // The guesser rotating inside its /24 buys nothing.
    let rotated = client_from([127, 0, 1, 67])?;
    assert_eq!(
        login_from(&rotated, &server, "carol", "guess-x").await?,
        429
    );
    Ok(())
}

#[tokio::test]
async fn rotating_addresses_in_one_prefix_buys_no_registrations() -> Result<()> {
    let server = TestServer::start_with(&["--auth-ip-rate", "20"]).await?;
    let mut statuses = Vec::new();
    for i in 1..=40u8 {
        let client = client_from([127, 0, 3, i])?;
        let body = json!({"username": format!("bot{i}"), "password": "password-bot"});
        statuses.push(
            post_from(&client, &server, "/v1/auth/register", &body)
                .await?
                .0,
        );
    }
    let created = statuses.iter().filter(|&&s| s == 201).count();
    assert_eq!(
        created, 20,
        "one /24's budget, however many addresses: {statuses:?}"
    );
    assert!(statuses[20..].iter().all(|&s| s == 429), "{statuses:?}");
    // Another /24 has its own budget.
    let elsewhere = client_from([127, 0, 4, 1])?;
    let body = json!({"username": "neighbour", "password": "password-x"});
    assert_eq!(
        post_from(&elsewhere, &server, "/v1/auth/register", &body)
            .await?
            .0,
        201
    );
    Ok(())
}

// Item 12: a block must look, to the blocked user, like a user who doesn't
// exist.

/// A user id nobody has.
const NOBODY: u64 = 987_654;

/// The same request for a user who blocked `who` and one who doesn't
/// exist: both answers, status and body.
async fn both(
    who: &TestUser,
    real: String,
    ghost: String,
    body: Option<Value>,
) -> Result<[(u16, Value); 2]> {
    let method = if body.is_some() {
        reqwest::Method::POST
    } else {
        reqwest::Method::GET
    };
    Ok([
        who.call(method.clone(), &real, body.as_ref()).await?,
        who.call(method, &ghost, body.as_ref()).await?,
    ])
}

#[tokio::test]
async fn a_blocked_user_sees_the_blocker_as_nonexistent() -> Result<()> {
    let server = TestServer::start().await?;
    let carol = server.user("carol").await?;
    let eve = server.user("eve").await?;
    let mallory = server.user("mallory").await?;
    carol.befriend(&eve).await?;
    let presence = format!("/v1/presence?users={}", carol.id);
    let (_, seen) = eve.get(&presence).await?;
    assert_eq!(
        seen["presence"].as_array().map(Vec::len),
        Some(1),
        "friends see presence"
    );
    // Mallory's request is pending when Carol blocks both.
    let (s, request) = mallory
        .post("/v1/friends/requests", &json!({"user_id": carol.id}))
        .await?;
    assert_eq!(s, 201, "{request}");
    let (_, page) = carol.get("/v1/sync?after=0&limit=500").await?;
    let carol_cursor = page["cursor"].as_u64().unwrap_or(0);
    for blocked in [&eve, &mallory] {
        let (s, _) = carol
            .post("/v1/blocks", &json!({"user_id": blocked.id}))
            .await?;
        assert_eq!(s, 204);
    }

    // Profile by id and by name.
    let [real, ghost] = both(
        &eve,
        format!("/v1/users/{}", carol.id),
        format!("/v1/users/{NOBODY}"),
        None,
    )
    .await?;
    assert_eq!(real, ghost, "profile");
    let [real, ghost] = both(
        &eve,
        "/v1/users?username=carol".into(),
        "/v1/users?username=nobody".into(),
        None,
    )
    .await?;
    assert_eq!(real, ghost, "username lookup");
    // Presence: left out, like any stranger's.
    let (_, seen) = eve.get(&presence).await?;
    assert_eq!(seen["presence"], json!([]), "presence");
    // Direct message and friend request.
    let dm = |to: u64| json!({"to": {"user": to}, "client_msg_id": format!("dm-{to}"), "body": {"text": "hi"}});
    let real = eve.post("/v1/messages", &dm(carol.id)).await?;
    let ghost = eve.post("/v1/messages", &dm(NOBODY)).await?;
    assert_eq!(real, ghost, "direct message");
    let real = eve
        .post("/v1/friends/requests", &json!({"user_id": carol.id}))
        .await?;
    let ghost = eve
        .post("/v1/friends/requests", &json!({"user_id": NOBODY}))
        .await?;
    assert_eq!(real, ghost, "friend request");
    // Groups: creating with her, adding her.
    let real = eve
        .post("/v1/groups", &json!({"name": "g", "members": [carol.id]}))
        .await?;
    let ghost = eve
        .post("/v1/groups", &json!({"name": "g", "members": [NOBODY]}))
        .await?;
    assert_eq!(real, ghost, "group creation");
    let (s, group) = eve
        .post("/v1/groups", &json!({"name": "g", "members": []}))
        .await?;
    assert_eq!(s, 201, "{group}");
    let members = format!("/v1/groups/{}/members", group["id"]);
    let real = eve.post(&members, &json!({"user_ids": [carol.id]})).await?;
    let ghost = eve.post(&members, &json!({"user_ids": [NOBODY]})).await?;
    assert_eq!(real, ghost, "group add");
    assert_eq!(real.0, 404, "{real:?}");

    // Mallory's request stays pending in her outgoing list...
    let (_, outgoing) = mallory
        .get("/v1/friends/requests?direction=outgoing")
        .await?;
    assert_eq!(outgoing["requests"][0]["id"], request["id"], "{outgoing}");
    assert_eq!(outgoing["requests"][0]["status"], "pending");
    // ...while Carol never sees it, nor anything of Eve's or Mallory's.
    let (_, incoming) = carol.get("/v1/friends/requests?direction=incoming").await?;
    assert_eq!(incoming["requests"], json!([]), "{incoming}");
    let since_block = carol.sync_all(carol_cursor).await?;
    let kinds: Vec<_> = since_block.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        kinds,
        [
            json!("friend.removed"),
            json!("block.updated"),
            json!("block.updated")
        ],
        "{since_block:?}"
    );
    // Cancelling it tells Mallory only.
    let (s, _) = mallory
        .post(
            &format!("/v1/friends/requests/{}/cancel", request["id"]),
            &json!({}),
        )
        .await?;
    assert_eq!(s, 200);
    assert_eq!(
        carol.sync_all(carol_cursor).await?.len(),
        3,
        "nothing new for Carol"
    );
    Ok(())
}
