//! `POST /v1/messages/batch`: many sends in one request, each handled as
//! `POST /v1/messages` would handle it, stored in order.

use std::time::Duration;

use anyhow::Result;
use mqchat_e2e::{eventually, TestServer, TestUser};
use serde_json::{json, Value};

fn text_to(user: u64, id: &str, text: &str) -> Value {
    json!({"to": {"user": user}, "client_msg_id": id, "body": {"text": text}})
}

async fn batch(from: &TestUser, sends: Vec<Value>) -> Result<(u16, Value)> {
    from.post("/v1/messages/batch", &json!({ "messages": sends }))
        .await
}

fn statuses(answer: &Value) -> Vec<u64> {
    answer["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| r["status"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// Every send of a batch gets its own answer, in order: stored ones 201,
/// resends (of an earlier send, or of one earlier in the same batch) 200
/// with the original, refused ones their error, and the refused ones stop
/// nothing. What is stored is pushed and synced once, in the batch's order.
#[tokio::test]
async fn each_send_of_a_batch_is_answered_and_stored_in_order() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let (s, group) = alice
        .post(
            "/v1/groups",
            &json!({"name": "team", "members": [carol.id]}),
        )
        .await?;
    assert_eq!(s, 201, "{group}");
    let group = group["id"].as_u64().unwrap_or(0);
    let (s, earlier) = alice
        .send_text(bob.id, "earlier", "before the batch")
        .await?;
    assert_eq!(s, 201);
    let mut bob_mqtt = server.mqtt(&bob).await?;

    let (status, answer) = batch(
        &alice,
        vec![
            text_to(bob.id, "b1", "one"),
            text_to(bob.id, "earlier", "a resend of an earlier send"),
            json!({"to": {"group": group}, "client_msg_id": "g1", "body": {"text": "to the team"}}),
            text_to(bob.id, "b2", "two"),
            text_to(bob.id, "b1", "a resend within the batch"),
            text_to(999_999, "nobody", "to no one"),
            json!({"to": {"user": bob.id}, "client_msg_id": "not-an-object", "body": "text"}),
            json!({"to": {"user": bob.id}, "client_msg_id": "extra", "body": {"text": "x"}, "sender_id": carol.id}),
            json!(42),
            text_to(bob.id, "b3", "three"),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        vec![201, 200, 201, 201, 200, 404, 400, 400, 400, 201],
        "{answer}"
    );
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let ids: Vec<Value> = results.iter().map(|r| r["client_msg_id"].clone()).collect();
    assert_eq!(
        ids,
        vec![
            json!("b1"),
            json!("earlier"),
            json!("g1"),
            json!("b2"),
            json!("b1"),
            json!("nobody"),
            json!("not-an-object"),
            json!("extra"),
            Value::Null,
            json!("b3")
        ],
        "each result names its send, when it could be read"
    );
    assert_eq!(results[1]["message"], earlier, "the original comes back");
    assert_eq!(results[4]["message"], results[0]["message"]);
    assert_eq!(results[5]["error"]["code"], "not_found");
    assert_eq!(results[6]["error"]["code"], "invalid_request");
    assert_eq!(results[7]["error"]["code"], "invalid_request");
    assert!(results[8]["error"]["message"].is_string());
    for r in &results {
        assert_eq!(
            r["message"].is_object(),
            r["error"].is_null(),
            "a result has a message or an error: {r}"
        );
    }

    // Bob's conversation holds the three new ones after the earlier one,
    // in the batch's order.
    let stored: Vec<&Value> = [0, 3, 9].iter().map(|&i| &results[i]["message"]).collect();
    let seqs: Vec<u64> = stored
        .iter()
        .map(|m| m["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    for m in &stored {
        let pushed = bob_mqtt
            .next_event(Duration::from_secs(5))
            .await?
            .expect("bob got no push");
        assert_eq!(&pushed["message"], *m, "pushed once each, in order");
    }
    assert_eq!(bob_mqtt.next_event(Duration::from_millis(300)).await?, None);
    let mut want = vec![earlier["id"].as_u64().unwrap_or(0)];
    want.extend(stored.iter().map(|m| m["id"].as_u64().unwrap_or(0)));
    assert_eq!(bob.synced_message_ids().await?, want);
    assert_eq!(
        carol.synced_user_message_ids().await?,
        vec![results[2]["message"]["id"].as_u64().unwrap_or(0)]
    );

    // The same batch again stores nothing: every stored send comes back
    // with 200 and its original.
    let (status, again) = batch(
        &alice,
        vec![text_to(bob.id, "b1", "one"), text_to(bob.id, "b3", "three")],
    )
    .await?;
    assert_eq!((status, statuses(&again)), (200, vec![200, 200]));
    assert_eq!(again["results"][1]["message"], results[9]["message"]);
    assert_eq!(bob.synced_message_ids().await?, want);
    Ok(())
}

/// A batch that is not a batch is refused as a whole, and stores nothing.
#[tokio::test]
async fn a_bad_batch_is_refused_whole_and_stores_nothing() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "0"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let one = text_to(bob.id, "x", "hi");

    let (s, e) = batch(&alice, vec![]).await?;
    assert_eq!((s, &e["error"]["code"]), (400, &json!("invalid_request")));
    let many: Vec<Value> = (0..101)
        .map(|i| text_to(bob.id, &format!("m{i}"), "hi"))
        .collect();
    let (s, e) = batch(&alice, many).await?;
    assert_eq!(
        (s, &e["error"]["code"]),
        (400, &json!("invalid_request")),
        "{e}"
    );
    let (s, e) = alice
        .post(
            "/v1/messages/batch",
            &json!({"messages": [one], "atomic": true}),
        )
        .await?;
    assert_eq!(s, 400, "unknown fields are refused: {e}");
    let (s, _) = alice
        .post("/v1/messages/batch", &json!({"messages": one}))
        .await?;
    assert_eq!(s, 400, "messages must be an array");
    let res = alice
        .request(reqwest::Method::POST, "/v1/messages/batch")
        .header("content-type", "application/json")
        .body(r#"{"messages": [{"to": {"user": 2}"#)
        .send()
        .await?;
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await?;
    assert_eq!(e["error"]["code"], "malformed_json");

    // Over 2 MiB: 413 for the whole request, not a result per send.
    let huge = json!({"to": {"user": bob.id}, "client_msg_id": "huge", "body": {"text": "hi", "pad": "y".repeat(2 * 1024 * 1024)}});
    let (s, e) = batch(&alice, vec![huge]).await?;
    assert_eq!((s, &e["error"]["code"]), (413, &json!("payload_too_large")));

    // Without a token: 401.
    let res = reqwest::Client::new()
        .post(server.url("/v1/messages/batch"))
        .json(&json!({"messages": [text_to(bob.id, "y", "hi")]}))
        .send()
        .await?;
    assert_eq!(res.status(), 401);

    assert!(bob.sync_all(0).await?.is_empty(), "nothing was stored");

    // A full batch of 100 sends, each near the largest body a send may
    // have (16 KiB), is taken.
    let big = "x".repeat(4000);
    let full: Vec<Value> = (0..100)
        .map(|i| json!({"to": {"user": bob.id}, "client_msg_id": format!("f{i}"), "body": {"text": big, "pad": "y".repeat(12_000 + i)}}))
        .collect();
    let (s, answer) = batch(&alice, full).await?;
    assert_eq!(s, 200);
    assert_eq!(statuses(&answer), vec![201; 100]);
    assert_eq!(bob.synced_message_ids().await?.len(), 100);
    Ok(())
}

/// Each send of a batch counts against the sender's rate limit: those past
/// it are refused one by one with 429, the answer says when to come back,
/// and nothing refused is stored.
#[tokio::test]
async fn sends_past_the_rate_limit_are_refused_one_by_one() -> Result<()> {
    // One send a second, bursts of ten.
    let server = TestServer::start_with(&["--send-rate", "1"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let sends: Vec<Value> = (0..15)
        .map(|i| text_to(bob.id, &format!("r{i}"), "hi"))
        .collect();
    let res = alice
        .request(reqwest::Method::POST, "/v1/messages/batch")
        .json(&json!({ "messages": sends }))
        .send()
        .await?;
    assert_eq!(res.status(), 200);
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let answer: Value = res.json().await?;
    let mut want = vec![201; 10];
    want.extend([429; 5]);
    assert_eq!(statuses(&answer), want, "{answer}");
    assert_eq!(answer["results"][14]["error"]["code"], "rate_limited");
    assert_eq!(bob.synced_message_ids().await?.len(), 10);

    // Once the bucket has a token again the same send is stored, and
    // without a refusal there is no Retry-After.
    let (retry_after, answer) = eventually(Duration::from_secs(5), || async {
        let res = alice
            .request(reqwest::Method::POST, "/v1/messages/batch")
            .json(&json!({ "messages": [text_to(bob.id, "r10", "hi")] }))
            .send()
            .await?;
        let retry_after = res.headers().contains_key("retry-after");
        let answer: Value = res.json().await?;
        Ok((statuses(&answer) != [429]).then_some((retry_after, answer)))
    })
    .await?;
    assert_eq!(statuses(&answer), vec![201], "{answer}");
    assert!(!retry_after, "Retry-After without a refusal");
    assert_eq!(bob.synced_message_ids().await?.len(), 11);
    Ok(())
}

/// A hostile sender can't use a batch to reach what a single send can't:
/// a group she is not in, someone who blocked her, or another sender's
/// name. Nothing of it is stored or pushed.
#[tokio::test]
async fn a_batch_reaches_nothing_a_single_send_cannot() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mallory = server.user("mallory").await?;
    let (s, group) = alice
        .post(
            "/v1/groups",
            &json!({"name": "private", "members": [bob.id]}),
        )
        .await?;
    assert_eq!(s, 201);
    let group = group["id"].as_u64().unwrap_or(0);
    let (s, _) = bob
        .post("/v1/blocks", &json!({"user_id": mallory.id}))
        .await?;
    assert!(s == 200 || s == 201 || s == 204, "block: {s}");
    let (s, sent) = alice.send_text(bob.id, "alices-id", "mine").await?;
    assert_eq!(s, 201);
    let mut bob_mqtt = server.mqtt(&bob).await?;
    let mut alice_mqtt = server.mqtt(&alice).await?;

    let (status, answer) = batch(
        &mallory,
        vec![
            json!({"to": {"group": group}, "client_msg_id": "m1", "body": {"text": "let me in"}}),
            text_to(bob.id, "m2", "you blocked me"),
            json!({"to": {"user": bob.id}, "client_msg_id": "m3", "body": {"text": "as alice"}, "sender_id": alice.id}),
            // Alice's client_msg_id is hers alone: mallory's send under it
            // is a new message of mallory's, not alice's original.
            text_to(alice.id, "alices-id", "hello alice"),
        ],
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(statuses(&answer), vec![404, 404, 400, 201], "{answer}");
    let mine = &answer["results"][3]["message"];
    assert_eq!(mine["sender_id"], mallory.id);
    assert_ne!(mine["id"], sent["id"]);

    assert_eq!(bob_mqtt.next_event(Duration::from_millis(500)).await?, None);
    let pushed = alice_mqtt
        .next_event(Duration::from_secs(5))
        .await?
        .expect("alice got mallory's message");
    assert_eq!(&pushed["message"], mine);
    assert_eq!(
        bob.synced_user_message_ids().await?,
        vec![sent["id"].as_u64().unwrap_or(0)],
        "bob has alice's message only"
    );
    let (_, page) = bob
        .get(&format!(
            "/v1/conversations/{}/messages",
            sent["conversation_id"]
        ))
        .await?;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1));
    Ok(())
}
