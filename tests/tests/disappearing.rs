//! Disappearing messages (`PATCH /v1/conversations/{id}
//! {message_ttl_seconds}`) and operator retention (`--retention-days`),
//! through real chatd processes: what readers see once a message's time
//! has come (history, sync, search, attachments), who may set the timer,
//! the events, and on PostgreSQL two nodes sweeping one database.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use mqchat_e2e::postgres::fresh_database;
use mqchat_e2e::{eventually, files_under, TestServer, TestUser, PNG_1X1};
use serde_json::{json, Value};

/// Long enough for a TTL of a few seconds to pass and a sweep to follow.
const EXPIRY_WAIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(10);

async fn upload_png(user: &TestUser) -> Result<String> {
    let res = user
        .request(reqwest::Method::POST, "/v1/files?name=dot.png")
        .header("content-type", "image/png")
        .body(PNG_1X1.to_vec())
        .send()
        .await?;
    let status = res.status().as_u16();
    let body: Value = res.json().await?;
    if status != 201 {
        return Err(anyhow!("upload: {status} {body}"));
    }
    body["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no id in {body}"))
}

async fn download_status(user: &TestUser, id: &str) -> Result<u16> {
    Ok(user
        .request(reqwest::Method::GET, &format!("/v1/files/{id}"))
        .send()
        .await?
        .status()
        .as_u16())
}

/// The caller's conversation `id` as `GET /v1/conversations` lists it.
async fn listed(user: &TestUser, id: u64) -> Result<Value> {
    let (s, list) = user.get("/v1/conversations").await?;
    assert_eq!(s, 200, "{list}");
    list["conversations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == id)
        .cloned()
        .ok_or_else(|| anyhow!("conversation {id} not in {list}"))
}

/// The ids of the messages in a page of history.
async fn history_ids(user: &TestUser, conversation: u64) -> Result<Vec<u64>> {
    let (s, page) = user
        .get(&format!("/v1/conversations/{conversation}/messages"))
        .await?;
    assert_eq!(s, 200, "{page}");
    Ok(page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_u64())
        .collect())
}

async fn search_ids(user: &TestUser, q: &str) -> Result<Vec<u64>> {
    let (s, found) = user.get(&format!("/v1/search?q={q}")).await?;
    assert_eq!(s, 200, "{found}");
    Ok(found["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_u64())
        .collect())
}

/// Every event of `user`'s inbox about message `id`, as sync shows it now.
async fn events_about(user: &TestUser, id: u64) -> Result<Vec<Value>> {
    Ok(user
        .sync_all(0)
        .await?
        .into_iter()
        .filter(|e| e["message"]["id"] == id)
        .collect())
}

/// For each message in `user`'s inbox, how its events read now: how many
/// as `message.expired` (its creation and, once swept, its expiry), and
/// whether any still reads as something else.
async fn expiry_view(user: &TestUser) -> Result<HashMap<u64, (usize, bool)>> {
    let mut view: HashMap<u64, (usize, bool)> = HashMap::new();
    for e in user.sync_all(0).await? {
        if let Some(id) = e["message"]["id"].as_u64() {
            let seen = view.entry(id).or_default();
            if e["type"] == "message.expired" {
                seen.0 += 1;
            } else {
                seen.1 = true;
            }
        }
    }
    Ok(view)
}

/// Both events about the message read as `message.expired`: it is gone,
/// and swept once.
const SWEPT_ONCE: Option<&(usize, bool)> = Some(&(2, false));

#[tokio::test]
async fn direct_messages_disappear_after_their_ttl_with_their_attachments() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut bob_rx = server.mqtt(&bob).await?;

    let (s, kept) = alice.send_text(bob.id, "kept", "pineapple before").await?;
    assert_eq!(s, 201, "{kept}");
    assert!(kept.get("expires_at").is_none(), "no TTL yet: {kept}");
    let conversation = kept["conversation_id"].as_u64().unwrap_or(0);
    assert_eq!(
        listed(&bob, conversation).await?["message_ttl_seconds"],
        Value::Null
    );

    // Either person of a direct conversation may set it; both hear of it.
    let (s, set) = bob
        .patch(
            &format!("/v1/conversations/{conversation}"),
            &json!({"message_ttl_seconds": 5}),
        )
        .await?;
    assert_eq!(
        (s, set),
        (200, json!({"id": conversation, "message_ttl_seconds": 5}))
    );
    let told = bob_rx
        .next_of_type("conversation.message_ttl", WAIT)
        .await?
        .ok_or_else(|| anyhow!("bob not told of the TTL"))?;
    assert_eq!(
        (
            &told["conversation_id"],
            &told["user_id"],
            &told["message_ttl_seconds"]
        ),
        (&json!(conversation), &json!(bob.id), &json!(5))
    );
    assert!(told["cursor"].as_u64().is_some(), "a stored event: {told}");
    let alice_heard = alice
        .sync_all(0)
        .await?
        .into_iter()
        .any(|e| e["type"] == "conversation.message_ttl" && e["message_ttl_seconds"] == 5);
    assert!(alice_heard, "alice's devices learn it by sync");
    assert_eq!(
        listed(&alice, conversation).await?["message_ttl_seconds"],
        5
    );

    // What is sent afterwards carries its expiry; an attachment with it.
    let file = upload_png(&alice).await?;
    let (s, secret) = alice
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "s1",
                    "body": {"text": "pineapple secret", "image": {"id": file}}}),
        )
        .await?;
    assert_eq!(s, 201, "{secret}");
    let secret_id = secret["id"].as_u64().unwrap_or(0);
    let sent_at = secret["sent_at"].as_i64().unwrap_or(0);
    assert_eq!(secret["expires_at"].as_i64(), Some(sent_at + 5_000));
    let (s, reply) = bob.send_text(alice.id, "r1", "pineapple reply").await?;
    assert_eq!(s, 201, "{reply}");
    let reply_id = reply["id"].as_u64().unwrap_or(0);
    assert!(reply["expires_at"].as_i64().is_some(), "{reply}");
    assert_eq!(download_status(&bob, &file).await?, 200);
    let (_, page) = bob
        .get(&format!("/v1/conversations/{conversation}/messages"))
        .await?;
    let shown = page["messages"].as_array().cloned().unwrap_or_default();
    assert!(
        shown
            .iter()
            .any(|m| m["id"] == secret_id && m["expires_at"] == sent_at + 5_000),
        "history carries expires_at: {page}"
    );
    let kept_id = kept["id"].as_u64().unwrap_or(0);
    let blobs_before = files_under(&server.data_dir().join("files")).len();

    // Bob hears that it is gone, live and as a stored event.
    let expired = bob_rx
        .next_of_type("message.expired", EXPIRY_WAIT)
        .await?
        .ok_or_else(|| anyhow!("bob not told of the expiry"))?;
    assert_eq!(expired["message"]["body"], json!({}), "{expired}");
    assert!(expired["cursor"].as_u64().is_some(), "{expired}");
    for user in [&alice, &bob] {
        eventually(EXPIRY_WAIT, || async {
            let view = expiry_view(user).await?;
            Ok([secret_id, reply_id]
                .iter()
                .all(|id| view.get(id) == SWEPT_ONCE)
                .then_some(()))
        })
        .await?;
        // Every event about them reads as message.expired, without content.
        for id in [secret_id, reply_id] {
            for e in events_about(user, id).await? {
                assert_eq!(e["message"]["body"], json!({}), "{e}");
            }
        }
        assert_eq!(history_ids(user, conversation).await?, vec![kept_id]);
        assert_eq!(search_ids(user, "pineapple").await?, vec![kept_id]);
    }
    // The attachment is deleted once nothing references it: for the
    // uploader too, and its bytes.
    assert_eq!(download_status(&bob, &file).await?, 404);
    assert_eq!(download_status(&alice, &file).await?, 404);
    assert!(
        files_under(&server.data_dir().join("files")).len() < blobs_before,
        "the blob is gone"
    );
    // A message that is gone can't be edited or recalled.
    let (s, _) = alice
        .patch(
            &format!("/v1/messages/{secret_id}"),
            &json!({"body": {"text": "again"}}),
        )
        .await?;
    assert_eq!(s, 404);
    let listed_now = listed(&bob, conversation).await?;
    assert_eq!(listed_now["last_message"], Value::Null, "{listed_now}");
    assert_eq!(listed_now["unread_count"], 0, "{listed_now}");

    // 0 turns it off: what comes next stays.
    let (s, off) = alice
        .patch(
            &format!("/v1/conversations/{conversation}"),
            &json!({"message_ttl_seconds": 0}),
        )
        .await?;
    assert_eq!((s, &off["message_ttl_seconds"]), (200, &Value::Null));
    let (_, after) = alice.send_text(bob.id, "after", "pineapple after").await?;
    assert!(after.get("expires_at").is_none(), "{after}");
    Ok(())
}

#[tokio::test]
async fn in_a_group_owners_and_admins_set_the_ttl_and_members_may_not() -> Result<()> {
    let server = TestServer::start().await?;
    let owner = server.user("owner").await?;
    let amy = server.user("amy").await?;
    let ben = server.user("ben").await?;
    let eve = server.user("eve").await?;
    let (s, group) = owner
        .post(
            "/v1/groups",
            &json!({"name": "team", "members": [amy.id, ben.id]}),
        )
        .await?;
    assert_eq!(s, 201, "{group}");
    let gid = group["id"].as_u64().unwrap_or(0);
    let conversation = group["conversation_id"].as_u64().unwrap_or(0);
    let path = format!("/v1/conversations/{conversation}");

    let (s, refused) = amy
        .patch(&path, &json!({"message_ttl_seconds": 60}))
        .await?;
    assert_eq!((s, &refused["error"]["code"]), (403, &json!("forbidden")));
    let (s, refused) = eve
        .patch(&path, &json!({"message_ttl_seconds": 60}))
        .await?;
    assert_eq!((s, &refused["error"]["code"]), (404, &json!("not_found")));
    for bad in [
        json!({"message_ttl_seconds": 4}),
        json!({"message_ttl_seconds": 31_536_001}),
        json!({"message_ttl_seconds": -1}),
        json!({"message_ttl_seconds": "60"}),
        json!({}),
        json!({"message_ttl_seconds": 60, "other": 1}),
    ] {
        let (s, refused) = owner.patch(&path, &bad).await?;
        assert_eq!(
            (s, &refused["error"]["code"]),
            (400, &json!("invalid_request")),
            "{bad}"
        );
    }
    assert_eq!(
        listed(&amy, conversation).await?["message_ttl_seconds"],
        Value::Null
    );

    // An admin may.
    let (s, _) = owner
        .put(
            &format!("/v1/groups/{gid}/members/{}/role", amy.id),
            &json!({"role": "admin"}),
        )
        .await?;
    assert_eq!(s, 200);
    let (s, set) = amy
        .patch(&path, &json!({"message_ttl_seconds": 3600}))
        .await?;
    assert_eq!((s, &set["message_ttl_seconds"]), (200, &json!(3600)));
    for user in [&owner, &amy, &ben] {
        assert_eq!(
            listed(user, conversation).await?["message_ttl_seconds"],
            3600
        );
        let events = user.sync_all(0).await?;
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "conversation.message_ttl"
                    && e["user_id"] == amy.id
                    && e["message_ttl_seconds"] == 3600),
            "{} told",
            user.name
        );
        // The group's timeline shows the change, as its other changes.
        assert!(
            events.iter().any(|e| e["type"] == "message.created"
                && e["message"]["kind"] == "system"
                && e["message"]["body"]["system"]["event"] == "message_ttl_changed"
                && e["message"]["body"]["system"]["message_ttl_seconds"] == 3600),
            "{}: a system message",
            user.name
        );
    }
    let (s, sent) = ben.send_group(gid, "g1", "hello").await?;
    assert_eq!(s, 201, "{sent}");
    assert_eq!(
        sent["expires_at"].as_i64(),
        sent["sent_at"].as_i64().map(|t| t + 3_600_000)
    );
    // Setting what is already set changes nothing and tells nobody.
    let before = ben.sync_all(0).await?.len();
    let (s, _) = owner
        .patch(&path, &json!({"message_ttl_seconds": 3600}))
        .await?;
    assert_eq!(s, 200);
    assert_eq!(ben.sync_all(0).await?.len(), before);
    Ok(())
}

/// `--retention-days` in a fraction of a day (0.0001: 8.64 s), so a test
/// sees messages age out: history then starts later, the attachment is
/// gone, and what was sent since stays.
#[tokio::test]
async fn retention_removes_old_messages_and_their_files() -> Result<()> {
    let server = TestServer::start_with(&["--retention-days", "0.0001"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let file = upload_png(&alice).await?;
    let (s, old) = alice
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "old",
                    "body": {"text": "mango old", "image": {"id": file}}}),
        )
        .await?;
    assert_eq!(s, 201, "{old}");
    assert!(
        old.get("expires_at").is_none(),
        "retention is not a TTL: {old}"
    );
    let old_id = old["id"].as_u64().unwrap_or(0);
    let conversation = old["conversation_id"].as_u64().unwrap_or(0);
    assert_eq!(download_status(&bob, &file).await?, 200);

    eventually(EXPIRY_WAIT, || async {
        Ok(history_ids(&bob, conversation)
            .await?
            .is_empty()
            .then_some(()))
    })
    .await?;
    let (s, new) = alice.send_text(bob.id, "new", "mango new").await?;
    assert_eq!(s, 201, "{new}");
    let new_id = new["id"].as_u64().unwrap_or(0);
    assert_eq!(history_ids(&bob, conversation).await?, vec![new_id]);
    assert_eq!(search_ids(&bob, "mango").await?, vec![new_id]);
    eventually(WAIT, || async {
        Ok((download_status(&bob, &file).await? == 404).then_some(()))
    })
    .await?;
    assert_eq!(download_status(&alice, &file).await?, 404);
    // No event of its own: sync shows the old message's event as gone.
    let events = events_about(&bob, old_id).await?;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "message.expired");
    assert_eq!(events[0]["message"]["body"], json!({}));
    assert!(
        server
            .metric("mqchat_messages_swept_total{reason=\"retention\"}")
            .await?
            >= 1.0
    );
    Ok(())
}

#[tokio::test]
async fn retention_days_are_bounded() -> Result<()> {
    // A fraction of a day is a retention of its own (12 hours here).
    TestServer::start_with(&["--retention-days", "0.5"]).await?;
    for bad in ["0", "-1", "0.00000001", "36501", "nan", "x"] {
        let started = TestServer::start_with(&["--retention-days", bad]).await;
        assert!(started.is_err(), "--retention-days {bad} was accepted");
    }
    Ok(())
}

/// Two nodes on one PostgreSQL database both run the sweeper: each
/// message that disappears is removed, and announced, once.
#[tokio::test]
async fn on_postgresql_two_nodes_sweep_each_message_once() -> Result<()> {
    let Some(url) = fresh_database().await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    let flags = mqchat_e2e::postgres::node_flags(&url);
    let a = TestServer::start_in(&a_dir, &flags).await?;
    std::fs::create_dir_all(&b_dir)?;
    for secret in ["jwt.secret", "admin.token"] {
        std::fs::copy(a_dir.join(secret), b_dir.join(secret))?;
    }
    let b = TestServer::start_in(&b_dir, &flags).await?;
    let alice = a.user("alice").await?;
    let bob = a.user("bob").await?.via(&b);
    let (_, kept) = alice.send_text(bob.id, "kept", "papaya kept").await?;
    let conversation = kept["conversation_id"].as_u64().unwrap_or(0);
    let kept_id = kept["id"].as_u64().unwrap_or(0);
    let (s, _) = bob
        .patch(
            &format!("/v1/conversations/{conversation}"),
            &json!({"message_ttl_seconds": 5}),
        )
        .await?;
    assert_eq!(s, 200);
    let mut sent = Vec::new();
    for i in 0..40 {
        let (s, m) = alice
            .send_text(bob.id, &format!("m{i}"), &format!("papaya {i}"))
            .await?;
        assert_eq!(s, 201, "{m}");
        assert!(m["expires_at"].as_i64().is_some(), "{m}");
        sent.push(m["id"].as_u64().unwrap_or(0));
    }
    // Gone from every read on either node as soon as they expire.
    eventually(EXPIRY_WAIT, || async {
        Ok((history_ids(&bob, conversation).await? == vec![kept_id]).then_some(()))
    })
    .await?;
    assert_eq!(search_ids(&alice, "papaya").await?, vec![kept_id]);
    // Each swept once: one message.expired per message per member.
    eventually(EXPIRY_WAIT, || async {
        let view = expiry_view(&bob).await?;
        Ok(sent
            .iter()
            .all(|id| view.get(id) == SWEPT_ONCE)
            .then_some(()))
    })
    .await?;
    let swept = a
        .metric("mqchat_messages_swept_total{reason=\"ttl\"}")
        .await?
        + b.metric("mqchat_messages_swept_total{reason=\"ttl\"}")
            .await?;
    assert_eq!(swept, sent.len() as f64, "each message swept by one node");
    for id in &sent {
        let events = events_about(&bob, *id).await?;
        assert_eq!(events.len(), 2, "created and expired, once: {events:?}");
        assert!(events.iter().all(|e| e["type"] == "message.expired"));
    }
    Ok(())
}

/// The Rust SDK: a typed call sets the timer, and the stream delivers the
/// typed events (the timer, then the message, then its expiry).
#[tokio::test]
async fn the_rust_sdk_sets_the_timer_and_streams_the_expiry() -> Result<()> {
    use mqchat_sdk::{Client, Event, Recipient, StreamOptions, Transport};
    let server = TestServer::start().await?;
    let base = server.url("");
    Client::register(&base, "alice", "password-alice").await?;
    Client::register(&base, "bob", "password-bob").await?;
    let alice = Client::login(&base, "alice", "password-alice").await?;
    let bob = Client::login(&base, "bob", "password-bob").await?;
    let first = alice
        .send_text(Recipient::User(bob.user_id()), "hello")
        .await?;
    let conversation = first.conversation_id;
    assert_eq!(bob.set_message_ttl(conversation, Some(5)).await?, Some(5));
    let listed = alice.conversations().await?;
    assert_eq!(listed[0].message_ttl_seconds, Some(5));
    let sent = alice
        .send_text(Recipient::User(bob.user_id()), "soon gone")
        .await?;
    assert_eq!(sent.expires_at, Some(sent.sent_at + 5_000));

    let mut stream = bob.connect(
        Transport::Tcp(server.mqtt.to_string()),
        StreamOptions::default(),
    )?;
    let mut timer = None;
    let deadline = tokio::time::Instant::now() + mqchat_e2e::patient(EXPIRY_WAIT);
    let expired = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = tokio::time::timeout(left, stream.recv())
            .await
            .map_err(|_| anyhow!("no message.expired on the stream"))?
            .ok_or_else(|| anyhow!("stream ended"))??;
        match event {
            Event::ConversationMessageTtl {
                message_ttl_seconds,
                user_id,
                ..
            } => timer = Some((message_ttl_seconds, user_id)),
            Event::MessageExpired { message, .. } if message.id == sent.id => break message,
            _ => {}
        }
    };
    assert_eq!(timer, Some((Some(5), bob.user_id())));
    assert!(expired.text().is_none(), "{expired:?}");
    assert!(expired.is_expired(expired.sent_at + 5_000));
    assert_eq!(alice.set_message_ttl(conversation, None).await?, None);
    Ok(())
}
