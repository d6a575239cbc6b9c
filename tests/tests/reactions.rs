//! Reactions through real chatd processes, on SQLite and on PostgreSQL:
//! one per user per emoji, counted in history and sync, pushed and synced
//! as stored events, refused to strangers, bounded, rate limited.

use std::time::Duration;

use anyhow::{anyhow, Result};
use mqchat_e2e::postgres::fresh_database;
use mqchat_e2e::{TestServer, TestUser};
use serde_json::{json, Value};

/// A chatd on SQLite, and one on PostgreSQL when it is installed (the
/// harness's store when the suite runs on PostgreSQL).
pub(crate) async fn on_both_backends(extra: &[&str]) -> Result<Vec<TestServer>> {
    let mut servers = vec![TestServer::start_with(extra).await?];
    if let Some(url) = fresh_database().await? {
        let mut flags = vec!["--store", url.as_str()];
        flags.extend_from_slice(extra);
        servers.push(TestServer::start_with(&flags).await?);
    }
    Ok(servers)
}

fn reaction_path(message: u64, emoji: &str) -> String {
    format!("/v1/messages/{message}/reactions/{emoji}")
}

async fn react(user: &TestUser, message: u64, emoji: &str) -> Result<(u16, Value)> {
    user.put(&reaction_path(message, emoji), &json!({})).await
}

async fn unreact(user: &TestUser, message: u64, emoji: &str) -> Result<(u16, Value)> {
    user.delete(&reaction_path(message, emoji)).await
}

/// The message's `reactions` as `user` sees it in their history of `conversation`.
async fn history_reactions(user: &TestUser, conversation: u64, message: u64) -> Result<Value> {
    let (s, page) = user
        .get(&format!("/v1/conversations/{conversation}/messages"))
        .await?;
    anyhow::ensure!(s == 200, "history: {s} {page}");
    let m = page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == message)
        .ok_or_else(|| anyhow!("message {message} not in {page}"))?;
    Ok(m.get("reactions").cloned().unwrap_or(json!([])))
}

pub(crate) fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[tokio::test]
async fn reactions_are_counted_pushed_and_synced() -> Result<()> {
    for server in on_both_backends(&[]).await? {
        let alice = server.user("alice").await?;
        let bob = server.user("bob").await?;
        let (s, m) = alice.send_text(bob.id, "r1", "lunch?").await?;
        assert_eq!(s, 201, "{m}");
        let id = m["id"].as_u64().ok_or_else(|| anyhow!("no id"))?;
        let conversation = m["conversation_id"].as_u64().unwrap_or(0);
        let mut alice_rx = server.mqtt(&alice).await?;

        // One reaction per user per emoji: again changes nothing.
        let (s, r) = react(&bob, id, "👍").await?;
        assert_eq!(s, 200, "{r}");
        assert_eq!(
            r,
            json!({"message_id": id, "reactions": [{"emoji": "👍", "count": 1, "mine": true}]})
        );
        let (s, again) = react(&bob, id, "👍").await?;
        assert_eq!((s, &again), (200, &r));
        let pushed = alice_rx
            .next_of_type("reaction.added", Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow!("no reaction.added pushed to alice"))?;
        assert_eq!(pushed["message_id"], id);
        assert_eq!(pushed["conversation_id"], conversation);
        assert_eq!(pushed["user_id"], bob.id);
        assert_eq!(pushed["emoji"], "👍");
        assert_eq!(pushed["count"], 1);
        assert!(pushed["cursor"].as_u64().is_some(), "{pushed}");

        // Two spellings of one emoji are one reaction (stored fully
        // qualified); a skin tone is an emoji of its own.
        react(&alice, id, "👍").await?;
        let (s, r) = react(&alice, id, "\u{2764}").await?;
        assert_eq!(s, 200, "{r}");
        let (s, r) = react(&bob, id, "\u{2764}\u{fe0f}").await?;
        assert_eq!(s, 200, "{r}");
        let (s, r) = react(&bob, id, "👍🏽").await?;
        assert_eq!(s, 200, "{r}");
        assert_eq!(
            history_reactions(&bob, conversation, id).await?,
            json!([
                {"emoji": "👍", "count": 2, "mine": true},
                {"emoji": "❤️", "count": 2, "mine": true},
                {"emoji": "👍🏽", "count": 1, "mine": true},
            ])
        );
        assert_eq!(
            history_reactions(&alice, conversation, id).await?,
            json!([
                {"emoji": "👍", "count": 2, "mine": true},
                {"emoji": "❤️", "count": 2, "mine": true},
                {"emoji": "👍🏽", "count": 1, "mine": false},
            ])
        );

        // Taking one back.
        let (s, r) = unreact(&alice, id, "👍").await?;
        assert_eq!(s, 200, "{r}");
        assert_eq!(
            r["reactions"][0],
            json!({"emoji": "👍", "count": 1, "mine": false})
        );
        let (s, r) = unreact(&alice, id, "👍").await?;
        assert_eq!((s, r["reactions"][0]["count"].clone()), (200, json!(1)));

        // Sync: the events in order with their cursors, and the message
        // with its reactions as the reader sees them.
        let events = bob.sync_all(0).await?;
        let cursors: Vec<u64> = events.iter().filter_map(|e| e["cursor"].as_u64()).collect();
        assert_eq!(cursors, (1..=cursors.len() as u64).collect::<Vec<_>>());
        let added: Vec<(Value, Value, Value)> = events_of(&events, "reaction.added")
            .iter()
            .map(|e| (e["user_id"].clone(), e["emoji"].clone(), e["count"].clone()))
            .collect();
        assert_eq!(
            added,
            vec![
                (json!(bob.id), json!("👍"), json!(1)),
                (json!(alice.id), json!("👍"), json!(2)),
                (json!(alice.id), json!("❤️"), json!(1)),
                (json!(bob.id), json!("❤️"), json!(2)),
                (json!(bob.id), json!("👍🏽"), json!(1)),
            ],
            "one event per change, none for a repeat"
        );
        // Each shape as schemas/mqchat.schema.json publishes it.
        let schemas = crate::schemas::Schemas::load()?;
        for event in &events {
            schemas.check("Event", event)?;
        }
        schemas.check("MessageReactions", &r)?;
        let removed = events_of(&events, "reaction.removed");
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert_eq!(removed[0]["count"], 1);
        let created = events_of(&events, "message.created");
        assert_eq!(
            created[0]["message"]["reactions"],
            json!([
                {"emoji": "👍", "count": 1, "mine": true},
                {"emoji": "❤️", "count": 2, "mine": true},
                {"emoji": "👍🏽", "count": 1, "mine": true},
            ])
        );
        // A message with none has no `reactions`.
        let (_, plain) = alice.send_text(bob.id, "r2", "plain").await?;
        let events = bob.sync_all(0).await?;
        let last = events_of(&events, "message.created")
            .into_iter()
            .find(|e| e["message"]["id"] == plain["id"])
            .ok_or_else(|| anyhow!("no second message"))?;
        assert!(last["message"].get("reactions").is_none(), "{last}");
    }
    Ok(())
}

#[tokio::test]
async fn only_emoji_are_reactions() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (_, m) = alice.send_text(bob.id, "e1", "hi").await?;
    let id = m["id"].as_u64().unwrap_or(0);
    let long = "👍".repeat(20);
    for bad in ["lol", "a", "👍👍", ":+1:", "%E2%80%8D", "1", long.as_str()] {
        let (s, body) = react(&bob, id, bad).await?;
        assert_eq!(s, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_emoji", "{bad}");
        let (s, body) = unreact(&bob, id, bad).await?;
        assert_eq!(
            (s, body["error"]["code"].clone()),
            (400, json!("invalid_emoji"))
        );
    }
    for good in ["🇫🇷", "👩‍👩‍👧‍👦", "🫠"] {
        let (s, body) = react(&bob, id, good).await?;
        assert_eq!(s, 200, "{good}: {body}");
    }
    let events = alice.sync_all(0).await?;
    assert_eq!(events_of(&events, "reaction.added").len(), 3);
    // Recalled and system messages take none.
    let (s, _) = alice
        .post(&format!("/v1/messages/{id}/recall"), &json!({}))
        .await?;
    assert_eq!(s, 200);
    let (s, body) = react(&bob, id, "🎉").await?;
    assert_eq!((s, body["error"]["code"].clone()), (409, json!("conflict")));
    Ok(())
}

/// Nobody reacts to, or hears of reactions to, a message they can't see.
#[tokio::test]
async fn strangers_cannot_react_or_hear_of_reactions() -> Result<()> {
    for server in on_both_backends(&[]).await? {
        let alice = server.user("alice").await?;
        let bob = server.user("bob").await?;
        let mallory = server.user("mallory").await?;
        let (_, m) = alice.send_text(bob.id, "s1", "just us").await?;
        let id = m["id"].as_u64().unwrap_or(0);
        let (s, body) = react(&mallory, id, "👍").await?;
        assert_eq!(
            (s, body["error"]["code"].clone()),
            (404, json!("not_found"))
        );
        let (s, body) = unreact(&mallory, id, "👍").await?;
        assert_eq!(
            (s, body["error"]["code"].clone()),
            (404, json!("not_found"))
        );
        let (s, _) = react(&mallory, id + 1000, "👍").await?;
        assert_eq!(s, 404, "no such message looks the same");
        assert_eq!(
            history_reactions(&bob, m["conversation_id"].as_u64().unwrap_or(0), id).await?,
            json!([])
        );

        // A group member who joined after a message can't react to it.
        let (s, g) = alice
            .post("/v1/groups", &json!({"name": "g", "members": [bob.id]}))
            .await?;
        assert_eq!(s, 201, "{g}");
        let group = g["id"].as_u64().unwrap_or(0);
        let (_, before) = alice.send_group(group, "g1", "before carol").await?;
        let carol = server.user("carol").await?;
        let (s, body) = alice
            .post(
                &format!("/v1/groups/{group}/members"),
                &json!({"user_ids": [carol.id]}),
            )
            .await?;
        assert_eq!(s, 200, "{body}");
        let before_id = before["id"].as_u64().unwrap_or(0);
        let (s, _) = react(&carol, before_id, "👍").await?;
        assert_eq!(s, 404);
        // ...nor hears of reactions to it.
        let (s, _) = react(&bob, before_id, "👍").await?;
        assert_eq!(s, 200);
        let carol_events = carol.sync_all(0).await?;
        assert!(
            events_of(&carol_events, "reaction.added").is_empty(),
            "{carol_events:?}"
        );
        assert_eq!(
            events_of(&alice.sync_all(0).await?, "reaction.added").len(),
            1
        );
        let mallory_events = mallory.sync_all(0).await?;
        assert!(mallory_events.is_empty(), "{mallory_events:?}");
    }
    Ok(())
}

#[tokio::test]
async fn different_emoji_per_message_are_bounded() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (_, m) = alice.send_text(bob.id, "b1", "react away").await?;
    let id = m["id"].as_u64().unwrap_or(0);
    let emoji = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰",
        "😗", "😙", "🥲", "😚", "🙂", "🤗",
    ];
    for e in &emoji[..20] {
        let (s, body) = react(&bob, id, e).await?;
        assert_eq!(s, 200, "{e}: {body}");
    }
    let (s, body) = react(&bob, id, emoji[20]).await?;
    assert_eq!(
        (s, body["error"]["code"].clone()),
        (409, json!("conflict")),
        "{body}"
    );
    let (s, body) = react(&alice, id, emoji[20]).await?;
    assert_eq!(s, 409, "{body}");
    // One already there takes more people.
    let (s, body) = react(&alice, id, emoji[0]).await?;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["reactions"].as_array().map(Vec::len), Some(20));
    assert_eq!(body["reactions"][0]["count"], 2);
    Ok(())
}

#[tokio::test]
async fn reactions_count_against_the_send_rate() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "1"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (_, m) = alice.send_text(bob.id, "l1", "hi").await?;
    let id = m["id"].as_u64().unwrap_or(0);
    let emoji = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎",
    ];
    let mut limited = None;
    for (i, e) in emoji.iter().enumerate() {
        let res = bob
            .request(reqwest::Method::PUT, &reaction_path(id, e))
            .send()
            .await?;
        if res.status() == 429 {
            let wait = res.headers().get("retry-after").cloned();
            let body: Value = res.json().await?;
            assert_eq!(body["error"]["code"], "rate_limited");
            assert!(wait.is_some(), "429 without Retry-After");
            limited = Some(i);
            break;
        }
        assert_eq!(res.status(), 200);
    }
    // A burst of 10 s worth at 1 a second.
    assert_eq!(limited, Some(10), "the 11th reaction in a burst is refused");
    // The refused one stored nothing.
    let stored = alice.sync_all(0).await?;
    assert_eq!(events_of(&stored, "reaction.added").len(), 10);
    Ok(())
}

/// Reactions and pins are stored events: a persistent MQTT session that was
/// away gets them replayed from the store on resume, in cursor order, like
/// messages.
#[tokio::test]
async fn a_persistent_session_gets_the_reactions_and_pins_it_missed() -> Result<()> {
    use mqchat_e2e::eventually;
    use mqchat_e2e::Mqtt;
    use rumqttc::{MqttOptions, QoS};

    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (_, m) = alice.send_text(bob.id, "p1", "hi").await?;
    let id = m["id"].as_u64().unwrap_or(0);
    let conversation = m["conversation_id"].as_u64().unwrap_or(0);
    let mut opts = MqttOptions::new("phone", server.mqtt.ip().to_string(), server.mqtt.port());
    opts.set_credentials(bob.id.to_string(), bob.access_token.clone());
    opts.set_clean_session(false);
    let mut phone = Mqtt::connect(opts.clone()).await?;
    phone
        .subscribe_ack(&format!("users/{}/#", bob.id), QoS::AtLeastOnce)
        .await?;
    phone.client.disconnect().await?;
    eventually(Duration::from_secs(5), || async {
        let gone = server
            .logs()
            .iter()
            .any(|l| l.contains("client disconnected") || l.contains("client dropped"));
        Ok(gone.then_some(()))
    })
    .await?;
    drop(phone);
    let head = bob.sync_all(0).await?.len() as u64;

    // While bob's phone is away.
    react(&alice, id, "🎉").await?;
    let (s, _) = alice
        .put(
            &format!("/v1/conversations/{conversation}/pins/{id}"),
            &json!({}),
        )
        .await?;
    assert_eq!(s, 204);
    unreact(&alice, id, "🎉").await?;

    let mut phone = Mqtt::connect(opts).await?;
    let mut got = Vec::new();
    while got.len() < 3 {
        let event = phone
            .next_event(Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow!("replay stopped after {got:?}"))?;
        got.push((event["cursor"].as_u64().unwrap_or(0), event["type"].clone()));
    }
    assert_eq!(
        got,
        vec![
            (head + 1, json!("reaction.added")),
            (head + 2, json!("pin.added")),
            (head + 3, json!("reaction.removed")),
        ]
    );
    Ok(())
}
