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
    let guessing = Instant::now();
    for i in 0..15 {
        statuses.push(login_from(&attacker, &server, "carol", &format!("guess-{i}")).await?);
    }
    // 10 at once, then one per 6 s (a slow machine may earn one more).
    let guesses = statuses.iter().filter(|&&s| s == 401).count();
    let refilled = guessing.elapsed().as_secs() as usize / 6;
    assert_eq!(&statuses[..10], [401; 10], "{statuses:?}");
    assert!(
        guesses <= 10 + refilled && statuses[14] == 429,
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
    // The guesser rotating inside its /24 buys nothing: a budget of its own
    // would answer both of these 401; the shared one refills one try per
    // 6 s, so at most one of two tries made together gets through.
    let rotated = client_from([127, 0, 1, 67])?;
    let mut tries = Vec::new();
    for guess in ["guess-x", "guess-y"] {
        tries.push(login_from(&rotated, &server, "carol", guess).await?);
    }
    assert!(tries.contains(&429), "{tries:?}");
    Ok(())
}

#[tokio::test]
async fn rotating_addresses_in_one_prefix_buys_no_registrations() -> Result<()> {
    let server = TestServer::start_with(&["--auth-ip-rate", "20"]).await?;
    let mut statuses = Vec::new();
    let started = Instant::now();
    for i in 1..=40u8 {
        let client = client_from([127, 0, 3, i])?;
        let body = json!({"username": format!("bot{i}"), "password": "password-bot"});
        statuses.push(
            post_from(&client, &server, "/v1/auth/register", &body)
                .await?
                .0,
        );
    }
    // 20 at once, then one per 3 s (a slow machine may earn a few more).
    let created = statuses.iter().filter(|&&s| s == 201).count();
    let refilled = started.elapsed().as_secs() as usize / 3;
    assert!(
        (20..=20 + refilled).contains(&created),
        "one /24's budget, however many addresses: {statuses:?}"
    );
    assert_eq!(&statuses[..20], [201; 20], "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        40 - created,
        "{statuses:?}"
    );
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

// Item 5: every state change draws from a per-user budget weighted by
// fan-out, not only sends.

/// Statuses of `n` calls by `user`, one after another; `call(i)` says
/// which (method, path, body).
async fn statuses(
    user: &TestUser,
    n: usize,
    call: impl Fn(usize) -> (reqwest::Method, String, Option<Value>),
) -> Result<Vec<u16>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (method, path, body) = call(i);
        out.push(user.call(method, &path, body.as_ref()).await?.0);
    }
    Ok(out)
}

const PATCH: reqwest::Method = reqwest::Method::PATCH;
const POST: reqwest::Method = reqwest::Method::POST;

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

/// With `--action-rate 2` a user has 60 units at once, 2 more a second.
const BUDGET_FLAGS: &[&str] = &[
    "--action-rate",
    "2",
    "--auth-ip-rate",
    "0",
    "--send-rate",
    "0",
];

/// Refills over `elapsed` at 2 units a second, rounded up.
fn refill(elapsed: Duration) -> usize {
    2 * (elapsed.as_secs() as usize + 1)
}

#[tokio::test]
async fn edits_are_limited_and_weighted_by_fan_out() -> Result<()> {
    let server = TestServer::start_with(BUDGET_FLAGS).await?;
    let names: Vec<String> = (0..99).map(|i| format!("m{i:03}")).collect();
    let members = server.accounts().users(&names, 8).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let (s, group) = alice
        .post("/v1/groups", &json!({"name": "big", "members": ids}))
        .await?;
    assert_eq!(s, 201, "{group}");
    let (_, sent) = alice
        .send_group(group["id"].as_u64().unwrap_or(0), "g1", "hi")
        .await?;
    let path = format!("/v1/messages/{}", sent["id"]);
    // Creating a 100-member group cost 3 units: 57 left, each edit to
    // 100 members costs 3, so 19 go through at once.
    let started = Instant::now();
    let edit = |i| {
        (
            PATCH,
            path.clone(),
            Some(json!({"body": {"text": format!("edit {i}")}})),
        )
    };
    let rss_before = server.rss_bytes()?;
    let group_edits = statuses(&alice, 60, edit).await?;
    eprintln!(
        "60 group edits in {:?}, RSS {} -> {} KiB",
        started.elapsed(),
        rss_before / 1024,
        server.rss_bytes()? / 1024
    );
    let ok = count(&group_edits, 200);
    assert!(
        ok >= 19 && ok <= 19 + refill(started.elapsed()) / 3,
        "{group_edits:?}"
    );
    assert_eq!(count(&group_edits, 429), 60 - ok, "{group_edits:?}");
    let res = alice
        .request(reqwest::Method::PATCH, &path)
        .json(&json!({"body": {"text": "once more"}}))
        .send()
        .await?;
    assert_eq!(res.status(), 429);
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    let (_, body) = (429, res.json::<Value>().await?);
    assert_eq!(body["error"]["code"], "rate_limited");
    // What reached a member: the accepted edits only.
    let edited = members[0]
        .sync_all(0)
        .await?
        .iter()
        .filter(|e| e["type"] == "message.edited")
        .count();
    assert_eq!(edited, ok);
    eprintln!(
        "60 edits to 100 members: {ok} accepted, {} stored events per member",
        edited
    );

    // A direct message's edits cost 1 each: 59 of Bob's 60 units go.
    let (_, dm) = bob.send_text(alice.id, "d1", "hi").await?;
    let path = format!("/v1/messages/{}", dm["id"]);
    let started = Instant::now();
    let edit = |i| {
        (
            PATCH,
            path.clone(),
            Some(json!({"body": {"text": format!("edit {i}")}})),
        )
    };
    let dm_edits = statuses(&bob, 80, edit).await?;
    let ok = count(&dm_edits, 200);
    assert!(
        ok >= 60 && ok <= 60 + refill(started.elapsed()),
        "{dm_edits:?}"
    );
    Ok(())
}

#[tokio::test]
async fn every_state_change_draws_from_the_budget() -> Result<()> {
    let server = TestServer::start_with(BUDGET_FLAGS).await?;
    let carol = server.user("carol").await?;
    let bounded = |what: &str, got: &[u16], ok: u16, started: Instant| {
        let accepted = count(got, ok);
        assert!(
            accepted >= 1 && accepted <= 60 + refill(started.elapsed()),
            "{what}: {got:?}"
        );
        assert_eq!(count(got, 429), got.len() - accepted, "{what}: {got:?}");
        eprintln!(
            "{what}: {accepted} of {} accepted in {:?}",
            got.len(),
            started.elapsed()
        );
    };

    // Friend request / cancel cycles fill nobody's sync any more.
    let eve = server.user("eve").await?;
    let started = Instant::now();
    let mut cycles = Vec::new();
    for _ in 0..60 {
        let (s, req) = eve
            .post("/v1/friends/requests", &json!({"user_id": carol.id}))
            .await?;
        cycles.push(s);
        if s == 201 {
            let cancel = format!("/v1/friends/requests/{}/cancel", req["id"]);
            cycles.push(eve.post(&cancel, &json!({})).await?.0);
        }
    }
    assert!(count(&cycles, 429) > 0, "{cycles:?}");
    let requests = carol
        .sync_all(0)
        .await?
        .iter()
        .filter(|e| e["type"] == "friend.request")
        .count();
    assert!(
        requests <= 60 + refill(started.elapsed()),
        "{requests} friend.request events"
    );
    eprintln!("60 request/cancel cycles: {requests} friend.request events for the victim");

    // Typing: answered 429 past the budget.
    let typist = server.user("typist").await?;
    let (_, dm) = typist.send_text(carol.id, "t1", "hi").await?;
    let typing = format!("/v1/conversations/{}/typing", dm["conversation_id"]);
    let started = Instant::now();
    let got = statuses(&typist, 200, |_| (POST, typing.clone(), None)).await?;
    bounded("typing", &got, 204, started);

    // Group creation.
    let founder = server.user("founder").await?;
    let started = Instant::now();
    let create = |i| {
        (
            POST,
            "/v1/groups".into(),
            Some(json!({"name": format!("g{i}")})),
        )
    };
    let got = statuses(&founder, 100, create).await?;
    bounded("group creation", &got, 201, started);

    // Member additions (add, remove, add again...).
    let adder = server.user("adder").await?;
    let (_, group) = adder.post("/v1/groups", &json!({"name": "g"})).await?;
    let members = format!("/v1/groups/{}/members", group["id"]);
    let one = format!("{members}/{}", carol.id);
    let carol_id = carol.id;
    let started = Instant::now();
    let got = statuses(&adder, 100, |i| {
        if i % 2 == 0 {
            (POST, members.clone(), Some(json!({"user_ids": [carol_id]})))
        } else {
            (reqwest::Method::DELETE, one.clone(), None)
        }
    })
    .await?;
    let accepted = count(&got, 200) + count(&got, 204);
    assert!(
        accepted <= 60 + refill(started.elapsed()),
        "member changes: {got:?}"
    );
    assert!(count(&got, 429) > 0, "member changes: {got:?}");

    // Acks with a new device id each time.
    let acker = server.user("acker").await?;
    let started = Instant::now();
    let ack = |i| {
        let body = json!({"device_id": format!("dev-{i}"), "cursor": 0});
        (POST, "/v1/sync/ack".into(), Some(body))
    };
    let got = statuses(&acker, 100, ack).await?;
    bounded("acks", &got, 204, started);
    Ok(())
}

#[tokio::test]
async fn device_ids_are_capped_per_user_oldest_evicted() -> Result<()> {
    if mqchat_e2e::postgres::skip_unless_sqlite("reading device_cursors from chat.db") {
        return Ok(());
    }
    let mut server = TestServer::start_with(&["--action-rate", "0"]).await?;
    let alice = server.user("alice").await?;
    for i in 0..100 {
        let (s, body) = alice
            .post(
                "/v1/sync/ack",
                &json!({"device_id": format!("install-{i}"), "cursor": 0}),
            )
            .await?;
        assert_eq!(s, 204, "{body}");
    }
    server.terminate().await?;
    let db = rusqlite::Connection::open(server.data_dir().join("chat.db"))?;
    let mut stmt = db.prepare("SELECT device_id FROM device_cursors WHERE user_id = ?1")?;
    let mut kept = stmt
        .query_map([alice.id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    kept.sort_by_key(|d| d.trim_start_matches("install-").parse::<u32>().unwrap_or(0));
    let newest: Vec<String> = (84..100).map(|i| format!("install-{i}")).collect();
    assert_eq!(kept, newest, "16 newest kept");
    Ok(())
}

// Item 10: `--dm-policy friends` was bypassed by putting the victim in a
// group; anyone could be added to any group without consent.

/// Event types in `user`'s inbox after `after`.
async fn kinds_after(user: &TestUser, after: u64) -> Result<Vec<String>> {
    Ok(user
        .sync_all(after)
        .await?
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect())
}

#[tokio::test]
async fn a_stranger_cannot_reach_a_friends_only_user_through_a_group() -> Result<()> {
    let server = TestServer::start_with(&["--dm-policy", "friends"]).await?;
    let carol = server.user("carol").await?;
    let eve = server.user("eve").await?;
    let dave = server.user("dave").await?;
    dave.befriend(&carol).await?;
    let start = carol.sync_all(0).await?.len() as u64;
    let (s, _) = eve.send_text(carol.id, "dm", "hi").await?;
    assert!(s >= 400, "the DM is refused: {s}");

    // The bypass: a group with Carol in it, and a post.
    let (s, group) = eve
        .post(
            "/v1/groups",
            &json!({"name": "trap", "members": [carol.id]}),
        )
        .await?;
    assert_eq!(s, 201, "{group}");
    let gid = group["id"].as_u64().unwrap_or(0);
    let (s, _) = eve.send_group(gid, "spam1", "buy now").await?;
    assert_eq!(s, 201);
    let (s, _) = eve
        .post(
            &format!("/v1/groups/{gid}/members"),
            &json!({"user_ids": [carol.id]}),
        )
        .await?;
    assert_eq!(s, 200, "adding again is the same pending invitation");
    assert_eq!(
        kinds_after(&carol, start).await?,
        ["group.invitation"],
        "an invitation, nothing of the group"
    );
    assert_eq!(group["invited"], json!([carol.id]), "{group}");
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(1),
        "{group}"
    );
    let (_, me) = carol.get("/v1/me").await?;
    assert_eq!(me["group_add_policy"], "friends", "{me}");
    let (s, _) = carol.get(&format!("/v1/groups/{gid}")).await?;
    assert_eq!(s, 404, "not a member");

    // Declining tells Eve; Carol still gets nothing of the group.
    let (_, list) = carol.get("/v1/groups/invitations").await?;
    let invitation = list["invitations"][0].clone();
    assert_eq!(invitation["group_id"], gid, "{list}");
    assert_eq!(invitation["inviter_id"], eve.id);
    let decline = format!("/v1/groups/invitations/{}/decline", invitation["id"]);
    let (s, declined) = carol.post(&decline, &json!({})).await?;
    assert_eq!((s, declined["status"].clone()), (200, json!("declined")));
    let (s, _) = carol.post(&decline, &json!({})).await?;
    assert_eq!(s, 409, "decided once");
    let eve_events = eve.sync_all(0).await?;
    let told = eve_events
        .iter()
        .any(|e| e["type"] == "group.invitation" && e["invitation"]["status"] == "declined");
    assert!(told, "the inviter hears of the decline");
    let (s, _) = eve.send_group(gid, "spam2", "buy now").await?;
    assert_eq!(s, 201);
    let carol_kinds = kinds_after(&carol, start).await?;
    assert!(
        carol_kinds.iter().all(|k| k == "group.invitation"),
        "{carol_kinds:?}"
    );

    // A friend adds Carol directly; "nobody" turns even that into an
    // invitation, which she accepts, and then she gets what follows.
    let (s, g2) = dave
        .post(
            "/v1/groups",
            &json!({"name": "friends", "members": [carol.id]}),
        )
        .await?;
    assert_eq!((s, g2["members"].as_array().map(Vec::len)), (201, Some(2)));
    let (s, me) = carol
        .patch("/v1/me", &json!({"group_add_policy": "nobody"}))
        .await?;
    assert_eq!((s, me["group_add_policy"].clone()), (200, json!("nobody")));
    let (_, g3) = dave
        .post(
            "/v1/groups",
            &json!({"name": "later", "members": [carol.id]}),
        )
        .await?;
    assert_eq!(g3["invited"], json!([carol.id]), "{g3}");
    let g3id = g3["id"].as_u64().unwrap_or(0);
    let (_, before) = dave.send_group(g3id, "early", "before she joins").await?;
    let (_, list) = carol.get("/v1/groups/invitations").await?;
    let id = list["invitations"][0]["id"].clone();
    let (s, accepted) = carol
        .post(&format!("/v1/groups/invitations/{id}/accept"), &json!({}))
        .await?;
    assert_eq!(
        (s, accepted["status"].clone()),
        (200, json!("accepted")),
        "{accepted}"
    );
    let (_, after) = dave.send_group(g3id, "late", "after she joined").await?;
    let seen = carol.synced_user_message_ids().await?;
    assert!(
        seen.contains(&after["id"].as_u64().unwrap_or(0)),
        "{seen:?}"
    );
    assert!(
        !seen.contains(&before["id"].as_u64().unwrap_or(0)),
        "{seen:?}"
    );
    Ok(())
}
