//! Friends, friend requests, blocks, the DM policy, presence and typing.

use std::time::Duration;

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn request_accept_and_remove_reach_both_sides() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut alice_rx = server.mqtt(&alice).await?;
    let mut bob_rx = server.mqtt(&bob).await?;

    let (s, req) = alice
        .post(
            "/v1/friends/requests",
            &json!({"user_id": bob.id, "note": "hi, it's alice"}),
        )
        .await?;
    assert_eq!(s, 201, "{req}");
    assert_eq!(req["status"], "pending");
    let ev = bob_rx
        .next_of_type("friend.request", WAIT)
        .await?
        .expect("bob told of the request");
    assert_eq!(ev["request"], req);
    assert!(
        alice_rx
            .next_of_type("friend.request", WAIT)
            .await?
            .is_some(),
        "alice's devices told too"
    );

    let (_, incoming) = bob.get("/v1/friends/requests?direction=incoming").await?;
    assert_eq!(incoming["requests"][0]["note"], "hi, it's alice");
    let (_, outgoing) = alice.get("/v1/friends/requests?direction=outgoing").await?;
    assert_eq!(outgoing["requests"][0]["id"], req["id"]);
    let (s, _) = alice
        .post("/v1/friends/requests", &json!({"user_id": bob.id}))
        .await?;
    assert_eq!(s, 409, "one pending request per pair");

    // Only the recipient may accept.
    let id = req["id"].as_u64().unwrap_or(0);
    let (s, _) = alice
        .post(&format!("/v1/friends/requests/{id}/accept"), &json!({}))
        .await?;
    assert_eq!(s, 404);
    let (s, accepted) = bob
        .post(&format!("/v1/friends/requests/{id}/accept"), &json!({}))
        .await?;
    assert_eq!((s, accepted["status"].as_str()), (200, Some("accepted")));
    let added = alice_rx
        .next_of_type("friend.added", WAIT)
        .await?
        .expect("alice told");
    assert_eq!(added["user"]["id"], bob.id);
    assert_eq!(
        bob_rx
            .next_of_type("friend.added", WAIT)
            .await?
            .expect("bob told")["user"]["id"],
        alice.id
    );
    let (_, friends) = alice.get("/v1/friends").await?;
    assert_eq!(friends["friends"][0]["user"]["username"], "bob");
    assert_eq!(friends["friends"][0]["online"], true);

    let (s, _) = bob
        .post(&format!("/v1/friends/requests/{id}/reject"), &json!({}))
        .await?;
    assert_eq!(s, 409, "a decided request can't be decided again");

    let (s, _) = alice.delete(&format!("/v1/friends/{}", bob.id)).await?;
    assert_eq!(s, 204);
    assert_eq!(
        bob_rx
            .next_of_type("friend.removed", WAIT)
            .await?
            .expect("bob told")["user_id"],
        alice.id
    );
    let (_, friends) = bob.get("/v1/friends").await?;
    assert_eq!(friends["friends"], json!([]));
    // All of it is in sync too, for devices that were offline.
    let kinds: Vec<String> = bob
        .sync_all(0)
        .await?
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "friend.request",
            "friend.request",
            "friend.added",
            "friend.removed"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn reject_cancel_and_crossed_requests() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let (_, r1) = alice
        .post("/v1/friends/requests", &json!({"user_id": bob.id}))
        .await?;
    let (s, rejected) = bob
        .post(
            &format!("/v1/friends/requests/{}/reject", r1["id"]),
            &json!({}),
        )
        .await?;
    assert_eq!((s, rejected["status"].as_str()), (200, Some("rejected")));
    let (_, r2) = alice
        .post("/v1/friends/requests", &json!({"user_id": carol.id}))
        .await?;
    let (s, _) = carol
        .post(
            &format!("/v1/friends/requests/{}/cancel", r2["id"]),
            &json!({}),
        )
        .await?;
    assert_eq!(s, 404, "only the sender cancels");
    let (s, cancelled) = alice
        .post(
            &format!("/v1/friends/requests/{}/cancel", r2["id"]),
            &json!({}),
        )
        .await?;
    assert_eq!((s, cancelled["status"].as_str()), (200, Some("cancelled")));
    // Crossed requests: bob asks alice while alice's request to bob... was
    // rejected, so ask again and let bob's own request close the loop.
    let (s, _) = alice
        .post("/v1/friends/requests", &json!({"user_id": bob.id}))
        .await?;
    assert_eq!(s, 201);
    let (s, auto) = bob
        .post("/v1/friends/requests", &json!({"user_id": alice.id}))
        .await?;
    assert_eq!(
        (s, auto["status"].as_str()),
        (200, Some("accepted")),
        "asking someone who asked you accepts"
    );
    let (_, friends) = bob.get("/v1/friends").await?;
    assert_eq!(friends["friends"][0]["user"]["id"], alice.id);
    let (s, _) = alice
        .post("/v1/friends/requests", &json!({"user_id": alice.id}))
        .await?;
    assert_eq!(s, 400);
    Ok(())
}

#[tokio::test]
async fn a_block_is_enforced_and_not_revealed() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mallory = server.user("mallory").await?;
    alice.befriend(&mallory).await?;
    let mut mallory_rx = server.mqtt(&mallory).await?;

    let (s, _) = alice
        .post("/v1/blocks", &json!({"user_id": mallory.id}))
        .await?;
    assert_eq!(s, 204);
    // Blocking ended the friendship; mallory learns that, not the block.
    assert!(mallory_rx
        .next_of_type("friend.removed", WAIT)
        .await?
        .is_some());
    let (_, blocks) = alice.get("/v1/blocks").await?;
    assert_eq!(blocks["user_ids"], json!([mallory.id]));

    // Mallory's sends and requests get exactly what an unknown user gets.
    let (s1, blocked) = mallory.send_text(alice.id, "m1", "let me in").await?;
    let (s2, unknown) = mallory.send_text(999_999, "m2", "anyone?").await?;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(blocked["error"], unknown["error"]);
    let (s1, blocked) = mallory
        .post("/v1/friends/requests", &json!({"user_id": alice.id}))
        .await?;
    let (s2, unknown) = mallory
        .post("/v1/friends/requests", &json!({"user_id": 999_999}))
        .await?;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(blocked["error"], unknown["error"]);
    // No presence either.
    let (_, p) = mallory
        .get(&format!("/v1/presence?users={}", alice.id))
        .await?;
    assert_eq!(p["presence"], json!([]));
    // Alice herself can't message someone she blocks until she unblocks.
    let (s, _) = alice.send_text(mallory.id, "a1", "hm").await?;
    assert_eq!(s, 403);
    let (s, _) = alice.delete(&format!("/v1/blocks/{}", mallory.id)).await?;
    assert_eq!(s, 204);
    let (s, _) = mallory.send_text(alice.id, "m3", "thanks").await?;
    assert_eq!(s, 201);
    Ok(())
}

#[tokio::test]
async fn friends_only_dm_policy() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = TestServer::start_in(&tmp.path().join("d"), &["--dm-policy", "friends"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (s, body) = alice.send_text(bob.id, "x1", "hello stranger").await?;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    alice.befriend(&bob).await?;
    let (s, _) = alice.send_text(bob.id, "x2", "hello friend").await?;
    assert_eq!(s, 201);
    Ok(())
}

#[tokio::test]
async fn presence_goes_to_friends_only_and_is_debounced() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let server =
        TestServer::start_in(&tmp.path().join("d"), &["--presence-debounce-ms", "1000"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let eve = server.user("eve").await?;
    alice.befriend(&bob).await?;
    let mut bob_rx = server.mqtt(&bob).await?;
    let mut eve_rx = server.mqtt(&eve).await?;

    let alice_conn = server.mqtt(&alice).await?;
    let online = bob_rx
        .next_on("presence", WAIT)
        .await?
        .expect("bob sees alice come online");
    assert_eq!(
        online,
        json!({"type": "presence", "user_id": alice.id, "online": true, "last_seen": null})
    );
    let (_, list) = bob.get("/v1/friends/online").await?;
    assert_eq!(list["friends"][0]["user"]["id"], alice.id);
    let (_, p) = bob
        .get(&format!("/v1/presence?users={},{}", alice.id, eve.id))
        .await?;
    assert_eq!(
        p["presence"].as_array().map(Vec::len),
        Some(1),
        "eve is not bob's friend: left out"
    );
    assert_eq!(p["presence"][0]["online"], true);

    // A flap shorter than the debounce is invisible.
    drop(alice_conn);
    let again = server.mqtt(&alice).await?;
    assert!(
        bob_rx
            .next_on("presence", Duration::from_millis(1500))
            .await?
            .is_none(),
        "flap leaked"
    );

    drop(again);
    let offline = bob_rx
        .next_on("presence", Duration::from_secs(4))
        .await?
        .expect("offline after the debounce");
    assert_eq!(offline["online"], false);
    assert!(offline["last_seen"].as_i64().is_some());
    let (_, list) = bob.get("/v1/friends/online").await?;
    assert_eq!(list["friends"], json!([]));
    let (_, friends) = bob.get("/v1/friends").await?;
    assert_eq!(friends["friends"][0]["last_seen"], offline["last_seen"]);

    assert!(
        eve_rx
            .next_on("presence", Duration::from_millis(200))
            .await?
            .is_none(),
        "non-friends hear nothing"
    );
    Ok(())
}

#[tokio::test]
async fn typing_is_pushed_but_never_stored() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let eve = server.user("eve").await?;
    let (_, m) = alice.send_text(bob.id, "t0", "hi").await?;
    let conv = m["conversation_id"].as_u64().unwrap_or(0);
    let mut bob_rx = server.mqtt(&bob).await?;
    let (s, _) = alice
        .post(&format!("/v1/conversations/{conv}/typing"), &json!({}))
        .await?;
    assert_eq!(s, 204);
    let t = bob_rx
        .next_on("typing", WAIT)
        .await?
        .expect("bob sees typing");
    assert_eq!(
        t,
        json!({"type": "typing", "conversation_id": conv, "user_id": alice.id})
    );
    assert_eq!(bob.sync_all(0).await?.len(), 1, "typing is not in sync");
    let (s, _) = eve
        .post(&format!("/v1/conversations/{conv}/typing"), &json!({}))
        .await?;
    assert_eq!(s, 404, "not a member");
    Ok(())
}
