//! Durable 1:1 messaging: push, sync, idempotency, history.

use std::time::{Duration, Instant};

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::json;

#[tokio::test]
async fn online_recipient_gets_the_push_within_a_second() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut bob_mqtt = server.mqtt(&bob).await?;
    let mut alice_other_device = server.mqtt(&alice).await?;
    let started = Instant::now();
    let (status, sent) = alice.send_text(bob.id, "hello-1", "hello bob").await?;
    assert_eq!(status, 201, "{sent}");
    let pushed = bob_mqtt
        .next_event(Duration::from_secs(1))
        .await?
        .expect("bob got no push within 1 s");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(pushed["type"], "message.created");
    assert_eq!(pushed["message"], sent, "push carries the stored message");
    assert_eq!(pushed["message"]["body"], json!({"text": "hello bob"}));
    assert_eq!(pushed["message"]["to"], json!({"user": bob.id}));
    assert_eq!(pushed["cursor"], 1);

    // The sender's other devices see it too, on the sender's own topic.
    let echoed = alice_other_device
        .next_event(Duration::from_secs(1))
        .await?
        .expect("alice's other device got no push");
    assert_eq!(echoed["message"], sent);

    // The push and sync agree on shape and cursor.
    let synced = bob.sync_all(0).await?;
    assert_eq!(synced, vec![pushed]);
    Ok(())
}

#[tokio::test]
async fn offline_recipient_gets_everything_by_sync_in_order_once() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "0"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let mut sent = Vec::new();
    for i in 0..120 {
        let (from, id) = if i % 3 == 0 {
            (&carol, format!("c{i}"))
        } else {
            (&alice, format!("a{i}"))
        };
        let (status, m) = from.send_text(bob.id, &id, &format!("message {i}")).await?;
        assert_eq!(status, 201, "{m}");
        sent.push(m);
    }
    let events = bob.sync_all(0).await?;
    assert_eq!(events.len(), 120, "every message exactly once");
    for (i, (event, sent)) in events.iter().zip(&sent).enumerate() {
        assert_eq!(
            event["cursor"],
            (i + 1) as u64,
            "inbox cursors are gap-free"
        );
        assert_eq!(&event["message"], sent, "in send order");
    }
    // Per conversation, seq is gap-free.
    for sender in [alice.id, carol.id] {
        let seqs: Vec<u64> = events
            .iter()
            .filter(|e| e["message"]["sender_id"] == sender)
            .map(|e| e["message"]["seq"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
    // Paging: small pages give the same sequence.
    let (_, page) = bob.get("/v1/sync?after=10&limit=5").await?;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(5));
    assert_eq!(page["cursor"], 15);
    assert_eq!(page["has_more"], true);
    let (_, end) = bob.get("/v1/sync?after=120").await?;
    assert_eq!(end, json!({"events": [], "cursor": 120, "has_more": false}));
    Ok(())
}

#[tokio::test]
async fn resend_with_the_same_client_msg_id_returns_the_original() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (s1, first) = alice.send_text(bob.id, "same-id", "once").await?;
    let (s2, again) = alice.send_text(bob.id, "same-id", "once").await?;
    // Even a different body under the same id is the same send.
    let (s3, changed) = alice.send_text(bob.id, "same-id", "twice?").await?;
    assert_eq!((s1, s2, s3), (201, 200, 200));
    assert_eq!(first, again);
    assert_eq!(first, changed);
    // Another sender may use the same client_msg_id.
    let (s4, bobs) = bob.send_text(alice.id, "same-id", "mine").await?;
    assert_eq!(s4, 201);
    assert_ne!(bobs["id"], first["id"]);
    let events = bob.sync_all(0).await?;
    assert_eq!(
        events.len(),
        2,
        "one stored message from alice, one from bob: {events:?}"
    );
    Ok(())
}

/// A resend is answered with the original even when the send itself would
/// now fail or go elsewhere, and stores nothing new.
#[tokio::test]
async fn a_resend_gets_the_original_after_a_block_or_to_another_recipient() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let (s1, first) = alice.send_text(bob.id, "once", "hello").await?;
    assert_eq!(s1, 201);

    // Sent to carol under the same id: still the message to bob, and no
    // conversation with carol appears.
    let (s2, elsewhere) = alice.send_text(carol.id, "once", "hello").await?;
    assert_eq!((s2, &elsewhere), (200, &first));
    let (_, list) = alice.get("/v1/conversations").await?;
    assert_eq!(list["conversations"].as_array().map(Vec::len), Some(1));
    assert!(carol.sync_all(0).await?.is_empty());

    // Bob blocks alice: a new send is refused as to an unknown user, but
    // the resend of one stored before still gets its original.
    let (s, _) = bob
        .post("/v1/blocks", &json!({"user_id": alice.id}))
        .await?;
    assert!(s == 200 || s == 201 || s == 204, "block: {s}");
    let (s3, _) = alice.send_text(bob.id, "new", "hello?").await?;
    assert_eq!(s3, 404);
    let (s4, again) = alice.send_text(bob.id, "once", "hello").await?;
    assert_eq!((s4, &again), (200, &first));
    assert_eq!(
        bob.synced_message_ids().await?,
        vec![first["id"].as_u64().unwrap_or(0)],
        "bob has the first message only"
    );
    Ok(())
}

#[tokio::test]
async fn history_and_conversation_list() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    for i in 1..=7 {
        let (s, _) = alice
            .send_text(bob.id, &format!("m{i}"), &format!("text {i}"))
            .await?;
        assert_eq!(s, 201);
    }
    let (_, last) = carol.send_text(bob.id, "c1", "from carol").await?;
    let (status, list) = bob.get("/v1/conversations").await?;
    assert_eq!(status, 200);
    let convs = list["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(convs.len(), 2);
    assert_eq!(convs[0]["peer"]["username"], "carol", "most recent first");
    assert_eq!(convs[0]["last_message"], last);
    assert_eq!(convs[1]["peer"]["id"], alice.id);
    assert_eq!(convs[1]["last_seq"], 7);

    let conv = convs[1]["id"].as_u64().unwrap_or(0);
    let (_, page) = bob
        .get(&format!("/v1/conversations/{conv}/messages?limit=3"))
        .await?;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|m| m["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, vec![5, 6, 7]);
    assert_eq!(page["has_more"], true);
    let (_, older) = bob
        .get(&format!(
            "/v1/conversations/{conv}/messages?before_seq=5&limit=10"
        ))
        .await?;
    let seqs: Vec<u64> = older["messages"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|m| m["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(older["has_more"], false);

    // Carol is not in alice-bob: she can't read it, and can't tell it exists.
    let (status, body) = carol
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    Ok(())
}

#[tokio::test]
async fn device_acks_never_move_backwards() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    for i in 0..3 {
        alice.send_text(bob.id, &format!("m{i}"), "x").await?;
    }
    let (s, _) = bob
        .post("/v1/sync/ack", &json!({"device_id": "phone", "cursor": 3}))
        .await?;
    assert_eq!(s, 204);
    let (s, _) = bob
        .post("/v1/sync/ack", &json!({"device_id": "phone", "cursor": 1}))
        .await?;
    assert_eq!(s, 204, "an older ack is accepted and ignored");
    let (s, body) = bob
        .post("/v1/sync/ack", &json!({"device_id": "phone", "cursor": 99}))
        .await?;
    assert_eq!(s, 400, "acking the future is refused: {body}");
    Ok(())
}

#[tokio::test]
async fn profiles() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (s, me) = alice.get("/v1/me").await?;
    assert_eq!((s, me["username"].as_str()), (200, Some("alice")));
    let res = alice
        .request(reqwest::Method::PATCH, "/v1/me")
        .json(&json!({"display_name": "Alice A."}))
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let (_, seen) = bob.get(&format!("/v1/users/{}", alice.id)).await?;
    assert_eq!(seen["display_name"], "Alice A.");
    let (_, found) = bob.get("/v1/users?username=ALICE").await?;
    assert_eq!(found["id"], alice.id);
    let (s, _) = bob.get("/v1/users/999").await?;
    assert_eq!(s, 404);
    // Usernames are unique regardless of case.
    let res = server
        .http_client
        .post(server.url("/v1/auth/register"))
        .json(&json!({"username": "Alice", "password": "another-password"}))
        .send()
        .await?;
    assert_eq!(res.status(), 409);
    Ok(())
}

/// Reads `name` (a plain sample, no labels) from the Prometheus text.
#[tokio::test]
async fn concurrent_sends_share_commits() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "0"]).await?;
    let bob = server.user("bob").await?;
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(server.user(&format!("sender{i}")).await?);
    }
    let jobs_before = server.metric("mqchat_store_commit_jobs_sum").await?;
    let commits_before = server.metric("mqchat_store_commit_jobs_count").await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in senders.into_iter().enumerate() {
        let to = bob.id;
        tasks.spawn(async move {
            for n in 0..25 {
                let (status, m) = s.send_text(to, &format!("{i}-{n}"), "burst").await?;
                anyhow::ensure!(status == 201, "{status} {m}");
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let jobs = server.metric("mqchat_store_commit_jobs_sum").await? - jobs_before;
    let commits = server.metric("mqchat_store_commit_jobs_count").await? - commits_before;
    assert!(jobs >= 200.0, "every send is a write job: {jobs}");
    assert!(
        commits < jobs,
        "no commit carried more than one send ({commits} commits for {jobs} jobs)"
    );
    assert_eq!(bob.sync_all(0).await?.len(), 200);
    Ok(())
}
