//! Recall, edit, delete-for-me and search.

use std::time::Duration;

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn recall_within_the_window_leaves_a_tombstone_everywhere() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut bob_rx = server.mqtt(&bob).await?;
    let (_, m) = alice.send_text(bob.id, "r1", "oops, wrong chat").await?;
    bob_rx.next_of_type("message.created", WAIT).await?;
    let id = m["id"].as_u64().unwrap_or(0);

    let (s, _) = bob
        .post(&format!("/v1/messages/{id}/recall"), &json!({}))
        .await?;
    assert_eq!(s, 403, "only the sender recalls");
    let (s, tomb) = alice
        .post(&format!("/v1/messages/{id}/recall"), &json!({}))
        .await?;
    assert_eq!(s, 200, "{tomb}");
    assert_eq!(tomb["body"], json!({}));
    assert!(tomb["recalled_at"].as_i64().is_some());
    let ev = bob_rx
        .next_of_type("message.recalled", WAIT)
        .await?
        .expect("bob told");
    assert_eq!(ev["message"], tomb);

    // Sync and history show the tombstone, never the text.
    let events = bob.sync_all(0).await?;
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e["message"]["body"] == json!({})),
        "{events:?}"
    );
    let conv = m["conversation_id"].as_u64().unwrap_or(0);
    let (_, h) = bob
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    assert_eq!(h["messages"][0]["recalled_at"], tomb["recalled_at"]);
    assert!(!h.to_string().contains("wrong chat"));
    let (_, found) = bob.get("/v1/search?q=wrong").await?;
    assert_eq!(found["messages"], json!([]));
    Ok(())
}

#[tokio::test]
async fn recall_after_the_window_is_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = TestServer::start_in(&tmp.path().join("d"), &["--recall-window", "1"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (_, m) = alice
        .send_text(bob.id, "r1", "too late to take back")
        .await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, body) = alice
        .post(&format!("/v1/messages/{}/recall", m["id"]), &json!({}))
        .await?;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("recall_window_passed"))
    );
    let (_, h) = bob
        .get(&format!(
            "/v1/conversations/{}/messages",
            m["conversation_id"]
        ))
        .await?;
    assert_eq!(h["messages"][0]["body"]["text"], "too late to take back");
    Ok(())
}

#[tokio::test]
async fn edit_and_delete_for_me() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut bob_rx = server.mqtt(&bob).await?;
    let (_, m) = alice.send_text(bob.id, "e1", "helo").await?;
    let id = m["id"].as_u64().unwrap_or(0);
    let conv = m["conversation_id"].as_u64().unwrap_or(0);
    let (s, _) = bob
        .patch(
            &format!("/v1/messages/{id}"),
            &json!({"body": {"text": "mine now"}}),
        )
        .await?;
    assert_eq!(s, 403);
    let (s, edited) = alice
        .patch(
            &format!("/v1/messages/{id}"),
            &json!({"body": {"text": "hello"}}),
        )
        .await?;
    assert_eq!(s, 200, "{edited}");
    assert_eq!(edited["body"]["text"], "hello");
    assert!(edited["edited_at"].as_i64().is_some());
    let ev = bob_rx
        .next_of_type("message.edited", WAIT)
        .await?
        .expect("bob told");
    assert_eq!(ev["message"], edited);
    let (_, found) = bob.get("/v1/search?q=hello").await?;
    assert_eq!(found["messages"][0]["id"], id, "the index follows the edit");
    let (_, old) = bob.get("/v1/search?q=helo").await?;
    assert_eq!(old["messages"], json!([]));

    // Bob deletes it for himself: gone from his history, still in alice's.
    let (s, _) = bob.delete(&format!("/v1/messages/{id}")).await?;
    assert_eq!(s, 204);
    let (_, h) = bob
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    assert_eq!(h["messages"], json!([]));
    let (_, h) = alice
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    assert_eq!(h["messages"][0]["id"], id);
    assert!(bob_rx.next_of_type("message.hidden", WAIT).await?.is_some());
    let (_, found) = bob.get("/v1/search?q=hello").await?;
    assert_eq!(found["messages"], json!([]));

    // Non-text messages (here a location) can't be edited into text.
    let (_, pic) = alice
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "p1", "body": {"location": {"lat": 52.5, "lon": 13.4}}}),
        )
        .await?;
    let (s, _) = alice
        .patch(
            &format!("/v1/messages/{}", pic["id"]),
            &json!({"body": {"text": "now text"}}),
        )
        .await?;
    assert_eq!(s, 409);
    Ok(())
}

#[tokio::test]
async fn search_never_shows_what_the_user_cannot_see() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let troll = server.user("troll").await?;
    alice
        .send_text(bob.id, "s1", "the quarterly report is ready")
        .await?;
    carol
        .send_text(bob.id, "s2", "quarterly numbers for carol only")
        .await?;
    troll.send_text(alice.id, "s3", "quarterly spam").await?;
    let (_, g) = carol
        .post("/v1/groups", &json!({"name": "g", "members": [alice.id]}))
        .await?;
    let gid = g["id"].as_u64().unwrap_or(0);
    carol.send_group(gid, "s4", "quarterly group plans").await?;

    let (_, r) = alice.get("/v1/search?q=quarterly").await?;
    let mut texts: Vec<String> = r["messages"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|m| m["body"]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            "quarterly group plans",
            "quarterly spam",
            "the quarterly report is ready"
        ]
    );

    // Block the troll, leave the group: both disappear from alice's results.
    alice
        .post("/v1/blocks", &json!({"user_id": troll.id}))
        .await?;
    alice
        .post(&format!("/v1/groups/{gid}/leave"), &json!({}))
        .await?;
    let (_, r) = alice.get("/v1/search?q=quart").await?;
    let texts: Vec<String> = r["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["body"]["text"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        texts,
        ["the quarterly report is ready"],
        "prefix match, visible only"
    );

    // FTS syntax in the query is taken literally, not as an operator.
    let (s, r) = alice.get("/v1/search?q=%22quarterly%20OR%20NEAR(").await?;
    assert_eq!(s, 200, "{r}");
    let (s, _) = alice.get("/v1/search?q=%20%20").await?;
    assert_eq!(s, 400);
    Ok(())
}
