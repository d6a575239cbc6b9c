//! Replies, mentions and forwarding through real chatd processes, on
//! SQLite and on PostgreSQL: a reply's quote as each reader sees it (a
//! tombstone once recalled), mentions flagged on the mentioned user's
//! events and counted in `mention_count` across devices and restarts, the
//! group's `mention_all` setting, forwards with their files, and the
//! offline-message webhook's `mentioned`.

use std::time::Duration;

use anyhow::{anyhow, Result};
use mqchat_e2e::postgres::TestPostgres;
use mqchat_e2e::webhooks::Receiver;
use mqchat_e2e::{eventually, TestServer, TestUser, PNG_1X1};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

async fn send(user: &TestUser, body: Value) -> Result<(u16, Value)> {
    user.post("/v1/messages", &body).await
}

fn id(v: &Value) -> Result<u64> {
    v["id"].as_u64().ok_or_else(|| anyhow!("no id in {v}"))
}

/// The user's conversation `conversation` as the list shows it.
async fn listed(user: &TestUser, conversation: u64) -> Result<Value> {
    let (s, list) = user.get("/v1/conversations").await?;
    anyhow::ensure!(s == 200, "{s} {list}");
    list["conversations"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == conversation).cloned())
        .ok_or_else(|| anyhow!("conversation {conversation} not in {list}"))
}

/// The message `message` in the user's history of `conversation`.
async fn in_history(user: &TestUser, conversation: u64, message: u64) -> Result<Value> {
    let (s, page) = user
        .get(&format!(
            "/v1/conversations/{conversation}/messages?limit=50"
        ))
        .await?;
    anyhow::ensure!(s == 200, "{s} {page}");
    page["messages"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["id"] == message).cloned())
        .ok_or_else(|| anyhow!("message {message} not in {page}"))
}

/// The user's synced `message.created` event of `message`.
async fn synced(user: &TestUser, message: u64) -> Result<Value> {
    user.sync_all(0)
        .await?
        .into_iter()
        .find(|e| e["type"] == "message.created" && e["message"]["id"] == message)
        .ok_or_else(|| anyhow!("message {message} not synced"))
}

/// The replies scenario on one chatd.
async fn replies_quote_their_target_as_it_reads_now(server: &TestServer) -> Result<()> {
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;

    let long = "x".repeat(300);
    let (s, first) = alice.send_text(bob.id, "a1", "hello there").await?;
    assert_eq!(s, 201, "{first}");
    let (_, longer) = alice.send_text(bob.id, "a2", &long).await?;
    let conversation = first["conversation_id"].as_u64().unwrap_or(0);

    let (s, reply) = send(
        &bob,
        json!({"to": {"user": alice.id}, "client_msg_id": "b1", "body": {"text": "hi!"}, "reply_to": id(&first)?}),
    )
    .await?;
    assert_eq!(s, 201, "{reply}");
    assert_eq!(reply["reply_to"], id(&first)?);
    assert_eq!(
        reply["quote"],
        json!({"id": id(&first)?, "sender_id": alice.id, "snippet": "hello there", "removed": false})
    );
    let (s, reply_long) = send(
        &bob,
        json!({"to": {"user": alice.id}, "client_msg_id": "b2", "body": {"text": "long"}, "reply_to": id(&longer)?}),
    )
    .await?;
    assert_eq!(s, 201, "{reply_long}");
    assert_eq!(
        reply_long["quote"]["snippet"]
            .as_str()
            .map(|s| s.chars().count()),
        Some(100),
        "the snippet is bounded"
    );

    // History and sync carry the quote, for both readers.
    for reader in [&alice, &bob] {
        let shown = in_history(reader, conversation, id(&reply)?).await?;
        assert_eq!(shown["quote"]["snippet"], "hello there");
        let event = synced(reader, id(&reply)?).await?;
        assert_eq!(event["message"]["quote"]["snippet"], "hello there");
    }

    // Recalled: every reader sees a tombstone in the quote, never the text.
    let (s, _) = alice
        .post(&format!("/v1/messages/{}/recall", id(&first)?), &json!({}))
        .await?;
    assert_eq!(s, 200);
    let tombstone =
        json!({"id": id(&first)?, "sender_id": alice.id, "snippet": null, "removed": true});
    for reader in [&alice, &bob] {
        let shown = in_history(reader, conversation, id(&reply)?).await?;
        assert_eq!(shown["quote"], tombstone);
        let event = synced(reader, id(&reply)?).await?;
        assert_eq!(event["message"]["quote"], tombstone);
        assert!(
            !event.to_string().contains("hello there"),
            "recalled text in {event}"
        );
    }

    // A target in another conversation, or none at all: invalid_reply,
    // and nothing is stored.
    let (_, elsewhere) = carol.send_text(bob.id, "c1", "secret").await?;
    for (n, target) in [id(&elsewhere)?, 999_999].into_iter().enumerate() {
        let (s, refused) = send(
            &alice,
            json!({"to": {"user": bob.id}, "client_msg_id": format!("bad{n}"), "body": {"text": "?"}, "reply_to": target}),
        )
        .await?;
        assert_eq!(
            (s, refused["error"]["code"].as_str()),
            (400, Some("invalid_reply")),
            "{refused}"
        );
    }
    let (s, refused) = send(
        &alice,
        json!({"to": {"user": carol.id}, "client_msg_id": "new-dm", "body": {"text": "?"}, "reply_to": id(&elsewhere)?}),
    )
    .await?;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (400, Some("invalid_reply"))
    );

    // In a group, someone who joined after a message can't quote it.
    let (s, group) = alice
        .post("/v1/groups", &json!({"name": "g", "members": [bob.id]}))
        .await?;
    assert_eq!(s, 201, "{group}");
    let g = id(&group)?;
    let (_, before) = alice.send_group(g, "g1", "before carol").await?;
    let (s, _) = alice
        .post(
            &format!("/v1/groups/{g}/members"),
            &json!({"user_ids": [carol.id]}),
        )
        .await?;
    assert_eq!(s, 200);
    let (s, refused) = send(
        &carol,
        json!({"to": {"group": g}, "client_msg_id": "c2", "body": {"text": "?"}, "reply_to": id(&before)?}),
    )
    .await?;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (400, Some("invalid_reply"))
    );
    let (s, ok) = send(
        &bob,
        json!({"to": {"group": g}, "client_msg_id": "b3", "body": {"text": "yes"}, "reply_to": id(&before)?}),
    )
    .await?;
    assert_eq!(s, 201, "{ok}");
    Ok(())
}

/// The mentions scenario on one chatd.
async fn mentions_are_flagged_and_counted(server: &TestServer) -> Result<()> {
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let dave = server.user("dave").await?;
    let (s, group) = alice
        .post(
            "/v1/groups",
            &json!({"name": "g", "members": [bob.id, carol.id]}),
        )
        .await?;
    assert_eq!(s, 201, "{group}");
    let g = id(&group)?;
    assert_eq!(group["mention_all"], "admins");
    let conversation = group["conversation_id"].as_u64().unwrap_or(0);

    let mut bob_rx = server.mqtt(&bob).await?;
    let mut carol_rx = server.mqtt(&carol).await?;
    let (s, m) = send(
        &alice,
        json!({"to": {"group": g}, "client_msg_id": "m1", "body": {"text": "@bob look"}, "mentions": [bob.id]}),
    )
    .await?;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["mentions"], json!([bob.id]));
    let pushed = bob_rx
        .next_of_type("message.created", WAIT)
        .await?
        .ok_or_else(|| anyhow!("no push to bob"))?;
    assert_eq!(pushed["mentioned"], true, "{pushed}");
    let pushed = carol_rx
        .next_of_type("message.created", WAIT)
        .await?
        .ok_or_else(|| anyhow!("no push to carol"))?;
    assert!(pushed.get("mentioned").is_none(), "{pushed}");
    assert_eq!(synced(&bob, id(&m)?).await?["mentioned"], true);
    assert!(synced(&carol, id(&m)?).await?.get("mentioned").is_none());
    assert_eq!(listed(&bob, conversation).await?["mention_count"], 1);
    assert_eq!(listed(&carol, conversation).await?["mention_count"], 0);
    // Read on another device (another login): cleared everywhere.
    let bob_laptop = server.login("bob", "password-bob").await?;
    let (s, _) = bob_laptop
        .post(
            &format!("/v1/conversations/{conversation}/read"),
            &json!({"seq": m["seq"]}),
        )
        .await?;
    assert_eq!(s, 200);
    assert_eq!(listed(&bob, conversation).await?["mention_count"], 0);

    // Only members; "all" only for admins until the group allows members.
    let (s, refused) = send(
        &alice,
        json!({"to": {"group": g}, "client_msg_id": "m2", "body": {"text": "x"}, "mentions": [dave.id]}),
    )
    .await?;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (400, Some("invalid_mention"))
    );
    let (s, refused) = send(
        &alice,
        json!({"to": {"user": bob.id}, "client_msg_id": "m3", "body": {"text": "x"}, "mentions": [carol.id]}),
    )
    .await?;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (400, Some("invalid_mention"))
    );
    let all = |n: &str| json!({"to": {"group": g}, "client_msg_id": n, "body": {"text": "@all"}, "mentions": "all"});
    let (s, refused) = send(&bob, all("b-all-1")).await?;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (s, refused) = bob
        .patch(
            &format!("/v1/groups/{g}"),
            &json!({"mention_all": "members"}),
        )
        .await?;
    assert_eq!(s, 403, "{refused}");
    let (s, updated) = alice
        .patch(
            &format!("/v1/groups/{g}"),
            &json!({"mention_all": "members"}),
        )
        .await?;
    assert_eq!((s, &updated["mention_all"]), (200, &json!("members")));
    let (s, everyone) = send(&bob, all("b-all-2")).await?;
    assert_eq!(s, 201, "{everyone}");
    assert_eq!(everyone["mentions"], "all");

    // "all" counts for everyone but its sender.
    assert_eq!(listed(&bob, conversation).await?["mention_count"], 0);
    assert_eq!(listed(&carol, conversation).await?["mention_count"], 1);
    assert_eq!(listed(&alice, conversation).await?["mention_count"], 1);
    // A recalled mention no longer counts.
    let (s, _) = bob
        .post(
            &format!("/v1/messages/{}/recall", id(&everyone)?),
            &json!({}),
        )
        .await?;
    assert_eq!(s, 200);
    assert_eq!(listed(&carol, conversation).await?["mention_count"], 0);
    let (s, again) = send(&alice, all("a-all")).await?;
    assert_eq!(s, 201, "{again}");
    assert_eq!(listed(&carol, conversation).await?["mention_count"], 1);
    Ok(())
}

/// The forwarding scenario on one chatd.
async fn forwards_carry_their_files_and_origin(server: &TestServer) -> Result<()> {
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let res = alice
        .request(reqwest::Method::POST, "/v1/files?name=dot.png")
        .header("content-type", "image/png")
        .body(PNG_1X1.to_vec())
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201);
    let file: Value = res.json().await?;
    let file_id = file["id"].as_str().unwrap_or_default().to_owned();
    let (s, original) = send(
        &alice,
        json!({"to": {"user": bob.id}, "client_msg_id": "f1", "body": {"image": {"id": file_id}}}),
    )
    .await?;
    assert_eq!(s, 201, "{original}");
    let download = |user: &TestUser| {
        let req = user.request(reqwest::Method::GET, &format!("/v1/files/{file_id}"));
        async move { Ok::<u16, anyhow::Error>(req.send().await?.status().as_u16()) }
    };
    assert_ne!(download(&carol).await?, 200, "not carol's before");

    // carol can't forward what she can't see.
    let forward = |n: &str, to: Value| json!({"to": to, "client_msg_id": n});
    let path = format!("/v1/messages/{}/forward", id(&original)?);
    let (s, refused) = carol
        .post(&path, &forward("x", json!({"user": bob.id})))
        .await?;
    assert_eq!(
        (s, refused["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let (s, group) = bob
        .post("/v1/groups", &json!({"name": "g", "members": [carol.id]}))
        .await?;
    assert_eq!(s, 201, "{group}");
    let g = id(&group)?;
    let (s, copy) = bob
        .post(&path, &forward("fw1", json!({"group": g})))
        .await?;
    assert_eq!(s, 201, "{copy}");
    assert_eq!(copy["sender_id"], bob.id);
    assert_eq!(copy["body"], original["body"]);
    assert_eq!(
        copy["forwarded_from"],
        json!({"sender_id": alice.id, "conversation_kind": "direct", "sent_at": original["sent_at"]})
    );
    assert!(
        !copy.to_string().contains(&format!(
            "\"conversation_id\":{}",
            original["conversation_id"]
        )),
        "the original's conversation is not revealed: {copy}"
    );
    assert_eq!(
        download(&carol).await?,
        200,
        "the copy's readers may download"
    );
    let event = synced(&carol, id(&copy)?).await?;
    assert_eq!(event["message"]["forwarded_from"]["sender_id"], alice.id);

    // Idempotent on client_msg_id.
    let (s, same) = bob
        .post(&path, &forward("fw1", json!({"group": g})))
        .await?;
    assert_eq!((s, id(&same)?), (200, id(&copy)?));
    Ok(())
}

#[tokio::test]
async fn replies_on_sqlite() -> Result<()> {
    let server = TestServer::start_with(&["--store", "sqlite"]).await?;
    replies_quote_their_target_as_it_reads_now(&server).await
}

#[tokio::test]
async fn mentions_on_sqlite() -> Result<()> {
    let server = TestServer::start_with(&["--store", "sqlite"]).await?;
    mentions_are_flagged_and_counted(&server).await
}

#[tokio::test]
async fn forwards_on_sqlite() -> Result<()> {
    let server = TestServer::start_with(&["--store", "sqlite"]).await?;
    forwards_carry_their_files_and_origin(&server).await
}

#[tokio::test]
async fn replies_mentions_and_forwards_on_postgresql() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    for (n, scenario) in [0, 1, 2].into_iter().enumerate() {
        let db = pg.create_database(&format!("replies{n}")).await?;
        let server = TestServer::start_with(&["--store", &db]).await?;
        match scenario {
            0 => replies_quote_their_target_as_it_reads_now(&server).await?,
            1 => mentions_are_flagged_and_counted(&server).await?,
            _ => forwards_carry_their_files_and_origin(&server).await?,
        }
    }
    Ok(())
}

/// `mention_count` is read from the store: the same after a restart; the
/// offline-message webhook says whom a message mentions.
#[tokio::test]
async fn mention_counts_survive_a_restart_and_offline_pushes_say_mentioned() -> Result<()> {
    let receiver = Receiver::default();
    let addr = receiver.start("127.0.0.1:0").await?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut server = TestServer::start_in(&data, &[]).await?;
    let (s, hook) = server
        .admin_post(
            "/admin/webhooks",
            json!({"url": format!("http://{addr}/hook"), "events": ["user.offline_message"]}),
        )
        .await?;
    assert_eq!(s, 201, "{hook}");
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (s, plain) = alice.send_text(bob.id, "p", "plain").await?;
    assert_eq!(s, 201);
    let (s, mention) = send(
        &alice,
        json!({"to": {"user": bob.id}, "client_msg_id": "m", "body": {"text": "@bob"}, "mentions": [bob.id]}),
    )
    .await?;
    assert_eq!(s, 201, "{mention}");
    let offline = eventually(WAIT, || async {
        let got: Vec<Value> = receiver
            .events()
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e["type"] == "user.offline_message")
            .collect();
        Ok((got.len() >= 2).then_some(got))
    })
    .await?;
    let mentioned = |message: &Value| {
        offline
            .iter()
            .find(|e| e["data"]["message_id"] == message["id"])
            .map(|e| e["data"]["mentioned"].clone())
    };
    assert_eq!(mentioned(&plain), Some(json!(false)));
    assert_eq!(mentioned(&mention), Some(json!(true)));

    let conversation = mention["conversation_id"].as_u64().unwrap_or(0);
    assert_eq!(listed(&bob, conversation).await?["mention_count"], 1);
    server.terminate().await?;
    let server = TestServer::start_in(&data, &[]).await?;
    let bob = bob.via(&server);
    let conv = listed(&bob, conversation).await?;
    assert_eq!(
        (&conv["mention_count"], &conv["unread_count"]),
        (&json!(1), &json!(2))
    );
    Ok(())
}

/// The Rust SDK's typed calls and events for replies, mentions and forwards.
#[tokio::test]
async fn the_rust_sdk_sends_replies_mentions_and_forwards() -> Result<()> {
    use mqchat_sdk::{Client, ErrorCode, Event, Mentions, OutgoingMessage, Recipient};
    let server = TestServer::start().await?;
    let base = server.url("");
    for name in ["alice", "bob"] {
        Client::register(&base, name, &format!("password-{name}")).await?;
    }
    let alice = Client::login(&base, "alice", "password-alice").await?;
    let bob = Client::login(&base, "bob", "password-bob").await?;
    let to_bob = Recipient::User(bob.user_id());
    let first = alice.send_text(to_bob, "question?").await?;
    let reply = bob
        .send_message(
            &OutgoingMessage::text(Recipient::User(alice.user_id()), "answer")
                .reply_to(first.id)
                .mentioning(Mentions::Users(vec![alice.user_id()])),
        )
        .await?;
    let quote = reply.quote.clone().ok_or_else(|| anyhow!("no quote"))?;
    assert_eq!(
        (quote.id, quote.snippet.as_deref(), quote.removed),
        (first.id, Some("question?"), false)
    );
    let page = alice.sync(0, 100).await?;
    let flagged = page.events.iter().find_map(|e| match e {
        Event::MessageCreated {
            message, mentioned, ..
        } if message.id == reply.id => Some(*mentioned),
        _ => None,
    });
    assert_eq!(flagged, Some(true));
    let conversations = alice.conversations().await?;
    assert_eq!(conversations[0].mention_count, 1);
    let refused = bob
        .send_message(&OutgoingMessage::text(to_bob, "?").reply_to(999_999))
        .await;
    assert_eq!(
        refused.err().and_then(|e| e.error_code()),
        Some(ErrorCode::InvalidReply)
    );
    let copy = bob
        .forward(first.id, Recipient::User(bob.user_id()))
        .await?;
    let from = copy
        .forwarded_from
        .ok_or_else(|| anyhow!("no forwarded_from"))?;
    assert_eq!(from.sender_id, alice.user_id());
    Ok(())
}
