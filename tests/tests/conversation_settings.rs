//! Pins and each user's own conversation settings (mute, pinned, archived)
//! through real chatd processes, on SQLite and on PostgreSQL.

use std::time::Duration;

use anyhow::{anyhow, Result};
use mqchat_e2e::webhooks::Receiver;
use mqchat_e2e::{eventually, TestServer, TestUser};
use serde_json::{json, Value};

use crate::reactions::{events_of as of_type, on_both_backends};

fn id(v: &Value) -> u64 {
    v["id"].as_u64().unwrap_or(0)
}

async fn pin(user: &TestUser, conversation: u64, message: u64) -> Result<(u16, Value)> {
    user.put(
        &format!("/v1/conversations/{conversation}/pins/{message}"),
        &json!({}),
    )
    .await
}

async fn unpin(user: &TestUser, conversation: u64, message: u64) -> Result<(u16, Value)> {
    user.delete(&format!("/v1/conversations/{conversation}/pins/{message}"))
        .await
}

async fn pinned_ids(user: &TestUser, conversation: u64) -> Result<Vec<u64>> {
    let (s, list) = user
        .get(&format!("/v1/conversations/{conversation}/pins"))
        .await?;
    anyhow::ensure!(s == 200, "pins: {s} {list}");
    Ok(list["pins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["message"]["id"].as_u64())
        .collect())
}

async fn settings(user: &TestUser, conversation: u64, patch: Value) -> Result<(u16, Value)> {
    user.patch(
        &format!("/v1/conversations/{conversation}/settings"),
        &patch,
    )
    .await
}

/// The ids of the caller's conversation list (`?archived=` as given).
async fn listed(user: &TestUser, archived: bool) -> Result<Vec<u64>> {
    let (s, list) = user
        .get(&format!("/v1/conversations?archived={archived}"))
        .await?;
    anyhow::ensure!(s == 200, "list: {s} {list}");
    Ok(list["conversations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(id)
        .collect())
}

#[tokio::test]
async fn pins_in_direct_conversations_and_by_group_policy() -> Result<()> {
    for server in on_both_backends(&[]).await? {
        let alice = server.user("alice").await?;
        let bob = server.user("bob").await?;
        let mallory = server.user("mallory").await?;

        // A direct conversation: both may pin.
        let (_, m1) = alice.send_text(bob.id, "p1", "the address").await?;
        let (_, m2) = bob.send_text(alice.id, "p2", "the time").await?;
        let dm = m1["conversation_id"].as_u64().unwrap_or(0);
        let mut alice_rx = server.mqtt(&alice).await?;
        assert_eq!(pin(&bob, dm, id(&m1)).await?.0, 204);
        let pushed = alice_rx
            .next_of_type("pin.added", Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow!("no pin.added pushed"))?;
        assert_eq!(
            (
                &pushed["conversation_id"],
                &pushed["message_id"],
                &pushed["user_id"]
            ),
            (&json!(dm), &m1["id"], &json!(bob.id))
        );
        assert_eq!(pin(&alice, dm, id(&m2)).await?.0, 204);
        assert_eq!(pin(&alice, dm, id(&m2)).await?.0, 204, "again: no change");
        assert_eq!(pinned_ids(&alice, dm).await?, vec![id(&m2), id(&m1)]);
        let (_, list) = bob.get(&format!("/v1/conversations/{dm}/pins")).await?;
        assert_eq!(list["pins"][1]["pinned_by"], bob.id);
        assert_eq!(list["pins"][1]["message"]["body"]["text"], "the address");
        assert_eq!(unpin(&alice, dm, id(&m1)).await?.0, 204);
        assert_eq!(pinned_ids(&bob, dm).await?, vec![id(&m2)]);
        let events = bob.sync_all(0).await?;
        let schemas = crate::schemas::Schemas::load()?;
        for event in &events {
            schemas.check("Event", event)?;
        }
        schemas.check("PinList", &list)?;
        assert_eq!(of_type(&events, "pin.added").len(), 2, "one per change");
        assert_eq!(of_type(&events, "pin.removed").len(), 1);

        // Strangers: no pins read, none made, none removed.
        let (s, body) = mallory.get(&format!("/v1/conversations/{dm}/pins")).await?;
        assert_eq!(
            (s, body["error"]["code"].clone()),
            (404, json!("not_found"))
        );
        assert_eq!(pin(&mallory, dm, id(&m1)).await?.0, 404);
        assert_eq!(unpin(&mallory, dm, id(&m2)).await?.0, 404);
        assert_eq!(pinned_ids(&alice, dm).await?, vec![id(&m2)]);
        // A message of one's own elsewhere can't be pinned here.
        let (_, elsewhere) = mallory.send_text(alice.id, "p3", "spam").await?;
        assert_eq!(pin(&alice, dm, id(&elsewhere)).await?.0, 404);

        // A group: the owner and admins pin; members once the group says so.
        let (s, g) = alice
            .post("/v1/groups", &json!({"name": "g", "members": [bob.id]}))
            .await?;
        assert_eq!(s, 201, "{g}");
        assert_eq!(g["who_can_pin"], "admins");
        let group = id(&g);
        let gc = g["conversation_id"].as_u64().unwrap_or(0);
        let (_, gm) = alice.send_group(group, "g1", "rules").await?;
        let (s, body) = pin(&bob, gc, id(&gm)).await?;
        assert_eq!(
            (s, body["error"]["code"].clone()),
            (403, json!("forbidden"))
        );
        assert_eq!(pin(&alice, gc, id(&gm)).await?.0, 204);
        let (s, body) = unpin(&bob, gc, id(&gm)).await?;
        assert_eq!(s, 403, "{body}");
        let (s, body) = bob
            .patch(
                &format!("/v1/groups/{group}"),
                &json!({"who_can_pin": "members"}),
            )
            .await?;
        assert_eq!(s, 403, "only the owner or admins set it: {body}");
        let (s, g) = alice
            .patch(
                &format!("/v1/groups/{group}"),
                &json!({"who_can_pin": "members"}),
            )
            .await?;
        assert_eq!(
            (s, g["who_can_pin"].clone()),
            (200, json!("members")),
            "{g}"
        );
        assert_eq!(g["name"], "g");
        // The members learn of it: a system message in the group, once.
        let (s, _) = alice
            .patch(
                &format!("/v1/groups/{group}"),
                &json!({"who_can_pin": "members"}),
            )
            .await?;
        assert_eq!(s, 200, "the same again changes nothing");
        let told: Vec<Value> = bob
            .sync_all(0)
            .await?
            .iter()
            .filter(|e| e["message"]["body"]["system"]["event"] == "pin_policy_changed")
            .map(|e| e["message"]["body"]["system"].clone())
            .collect();
        assert_eq!(
            told,
            vec![
                json!({"event": "pin_policy_changed", "actor": alice.id, "who_can_pin": "members"})
            ]
        );
        assert_eq!(unpin(&bob, gc, id(&gm)).await?.0, 204);
        assert_eq!(pin(&bob, gc, id(&gm)).await?.0, 204);
        let (s, body) = alice
            .patch(&format!("/v1/groups/{group}"), &json!({}))
            .await?;
        assert_eq!(s, 400, "{body}");
        let (s, body) = alice
            .patch(
                &format!("/v1/groups/{group}"),
                &json!({"who_can_pin": "anyone"}),
            )
            .await?;
        assert_eq!(s, 400, "{body}");
        let (_, g) = bob.get(&format!("/v1/groups/{group}")).await?;
        assert_eq!(g["who_can_pin"], "members");

        // A member who joined later sees no pin of what came before.
        let carol = server.user("carol").await?;
        let (s, body) = alice
            .post(
                &format!("/v1/groups/{group}/members"),
                &json!({"user_ids": [carol.id]}),
            )
            .await?;
        assert_eq!(s, 200, "{body}");
        assert_eq!(pinned_ids(&carol, gc).await?, Vec::<u64>::new());
        assert_eq!(pin(&carol, gc, id(&gm)).await?.0, 404);
        assert!(of_type(&carol.sync_all(0).await?, "pin.added").is_empty());
        assert!(pinned_ids(&mallory, gc).await.is_err());
    }
    Ok(())
}

#[tokio::test]
async fn pins_per_conversation_are_bounded() -> Result<()> {
    let server = TestServer::start_with(&["--max-pins-per-conversation", "5"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut ids = Vec::new();
    for i in 0..6 {
        let (s, m) = alice.send_text(bob.id, &format!("b{i}"), "pin me").await?;
        assert_eq!(s, 201);
        ids.push(id(&m));
    }
    let (_, m) = alice.send_text(bob.id, "b-last", "x").await?;
    let dm = m["conversation_id"].as_u64().unwrap_or(0);
    for &m in &ids[..5] {
        assert_eq!(pin(&alice, dm, m).await?.0, 204);
    }
    let (s, body) = pin(&bob, dm, ids[5]).await?;
    assert_eq!(
        (s, body["error"]["code"].clone()),
        (409, json!("conflict")),
        "{body}"
    );
    assert_eq!(pinned_ids(&bob, dm).await?.len(), 5);
    assert_eq!(pin(&bob, dm, ids[0]).await?.0, 204, "pinned already");
    assert_eq!(unpin(&bob, dm, ids[0]).await?.0, 204);
    assert_eq!(pin(&bob, dm, ids[5]).await?.0, 204, "room again");
    Ok(())
}

#[tokio::test]
async fn settings_pin_archive_and_reach_the_users_devices_only() -> Result<()> {
    for server in on_both_backends(&[]).await? {
        let alice = server.user("alice").await?;
        let bob = server.user("bob").await?;
        let carol = server.user("carol").await?;
        let mallory = server.user("mallory").await?;
        let (_, m) = alice.send_text(bob.id, "s1", "first").await?;
        let with_alice = m["conversation_id"].as_u64().unwrap_or(0);
        let (_, m) = carol.send_text(bob.id, "s2", "newer").await?;
        let with_carol = m["conversation_id"].as_u64().unwrap_or(0);
        assert_eq!(listed(&bob, false).await?, vec![with_carol, with_alice]);
        let (_, list) = bob.get("/v1/conversations").await?;
        assert_eq!(
            list["conversations"][0]["settings"],
            json!({"muted_until": null, "pinned": false, "archived": false})
        );

        // Pinned: at the top, whatever comes later elsewhere.
        let mut bob_other_device = server.mqtt(&bob).await?;
        let mut alice_rx = server.mqtt(&alice).await?;
        let (s, now) = settings(&bob, with_alice, json!({"pinned": true})).await?;
        assert_eq!(s, 200, "{now}");
        assert_eq!(
            now,
            json!({"muted_until": null, "pinned": true, "archived": false})
        );
        let pushed = bob_other_device
            .next_of_type("conversation.settings", Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow!("no conversation.settings on bob's other device"))?;
        assert_eq!(pushed["conversation_id"], with_alice);
        assert_eq!(pushed["settings"], now);
        carol.send_text(bob.id, "s3", "newest").await?;
        assert_eq!(listed(&bob, false).await?, vec![with_alice, with_carol]);
        assert_eq!(
            listed(&alice, false).await?,
            vec![with_alice],
            "bob's setting only"
        );

        // Muted: for a time or for good, shown until it ends.
        let until = 4_102_444_800_000_i64; // 2100
        let (s, now) = settings(&bob, with_carol, json!({"muted_until": until})).await?;
        assert_eq!((s, now["muted_until"].clone()), (200, json!(until)));
        let (_, now) = settings(&bob, with_carol, json!({"muted_until": "forever"})).await?;
        assert_eq!(now["muted_until"], "forever");
        let (_, now) = settings(&bob, with_carol, json!({"muted_until": 1000})).await?;
        assert_eq!(
            now["muted_until"],
            Value::Null,
            "a time passed reads as null"
        );
        let (_, now) = settings(&bob, with_carol, json!({"muted_until": "forever"})).await?;
        let (_, list) = bob.get("/v1/conversations").await?;
        assert_eq!(list["conversations"][1]["settings"], now);
        let (_, now) = settings(&bob, with_carol, json!({"muted_until": null})).await?;
        assert_eq!(now["muted_until"], Value::Null);
        for bad in [
            json!({"muted_until": "later"}),
            json!({"muted_until": -5}),
            json!({"pinned": "yes"}),
            json!({"colour": "red"}),
        ] {
            let (s, body) = settings(&bob, with_carol, bad.clone()).await?;
            assert_eq!(s, 400, "{bad}: {body}");
        }

        // Archived: out of the list until a new message arrives.
        let (_, now) = settings(&bob, with_carol, json!({"archived": true})).await?;
        assert_eq!(now["archived"], true);
        assert_eq!(listed(&bob, false).await?, vec![with_alice]);
        assert_eq!(listed(&bob, true).await?, vec![with_carol]);
        carol.send_text(bob.id, "s4", "back again").await?;
        assert_eq!(listed(&bob, false).await?, vec![with_alice, with_carol]);
        assert_eq!(listed(&bob, true).await?, Vec::<u64>::new());
        let (_, list) = bob.get("/v1/conversations").await?;
        assert_eq!(list["conversations"][1]["settings"]["archived"], false);
        // Unpinned, archived by hand, unarchived by hand.
        settings(&bob, with_alice, json!({"pinned": false, "archived": true})).await?;
        assert_eq!(listed(&bob, true).await?, vec![with_alice]);
        settings(&bob, with_alice, json!({"archived": false})).await?;
        assert_eq!(listed(&bob, false).await?, vec![with_carol, with_alice]);

        // Every change reached bob's devices, none reached alice.
        let events = bob.sync_all(0).await?;
        let schemas = crate::schemas::Schemas::load()?;
        for event in &events {
            schemas.check("Event", event)?;
        }
        let (_, list) = bob.get("/v1/conversations").await?;
        schemas.check("ConversationList", &list)?;
        let changes = of_type(&events, "conversation.settings");
        assert_eq!(changes.len(), 9, "{changes:?}");
        assert!(
            alice_rx
                .next_of_type("conversation.settings", Duration::from_millis(300))
                .await?
                .is_none(),
            "another user's settings pushed to alice"
        );
        assert!(of_type(&alice.sync_all(0).await?, "conversation.settings").is_empty());

        // Strangers can't read or set settings of a conversation not theirs.
        let (s, body) = settings(&mallory, with_alice, json!({"archived": true})).await?;
        assert_eq!(
            (s, body["error"]["code"].clone()),
            (404, json!("not_found"))
        );
        assert!(listed(&mallory, true).await?.is_empty());
        assert!(mallory.sync_all(0).await?.is_empty());
    }
    Ok(())
}

#[tokio::test]
async fn pinned_conversations_are_bounded() -> Result<()> {
    let server = TestServer::start_with(&["--max-pinned-conversations", "3"]).await?;
    let bob = server.user("bob").await?;
    let mut conversations = Vec::new();
    for i in 0..4 {
        let u = server.user(&format!("user{i}")).await?;
        let (_, m) = u.send_text(bob.id, "hi", "hi").await?;
        conversations.push(m["conversation_id"].as_u64().unwrap_or(0));
    }
    for &c in &conversations[..3] {
        assert_eq!(settings(&bob, c, json!({"pinned": true})).await?.0, 200);
    }
    let (s, body) = settings(&bob, conversations[3], json!({"pinned": true})).await?;
    assert_eq!(
        (s, body["error"]["code"].clone()),
        (409, json!("conflict")),
        "{body}"
    );
    assert_eq!(
        settings(&bob, conversations[0], json!({"pinned": true}))
            .await?
            .0,
        200,
        "pinned already"
    );
    Ok(())
}

/// A muted conversation sends no offline-message webhook (so no push) but
/// for a mention, and still counts unread; unmuted, it notifies again.
#[tokio::test]
async fn a_muted_conversation_sends_no_offline_push() -> Result<()> {
    for server in on_both_backends(&[]).await? {
        let receiver = Receiver::default();
        let addr = receiver.start("127.0.0.1:0").await?;
        let (s, hook) = server
            .admin_post(
                "/admin/webhooks",
                json!({"url": format!("http://{addr}/hook"), "events": ["user.offline_message"]}),
            )
            .await?;
        assert_eq!(s, 201, "{hook}");
        let alice = server.user("alice").await?;
        let bob = server.user("bob").await?;
        let dave = server.user("dave").await?;
        let (_, m) = alice.send_text(bob.id, "m0", "before").await?;
        let dm = m["conversation_id"].as_u64().unwrap_or(0);
        let offline_for = |user: u64| {
            receiver
                .events()
                .iter()
                .filter(|(_, v)| v["data"]["recipient_id"] == user)
                .map(|(_, v)| v["data"]["preview"].clone())
                .collect::<Vec<_>>()
        };
        eventually(Duration::from_secs(10), || async {
            Ok((offline_for(bob.id).len() == 1).then_some(()))
        })
        .await?;

        let (s, _) = settings(&bob, dm, json!({"muted_until": "forever"})).await?;
        assert_eq!(s, 200);
        alice.send_text(bob.id, "m1", "while muted").await?;
        // Deliveries go out in order: once dave's arrives, bob's would have.
        alice.send_text(dave.id, "m2", "to dave").await?;
        eventually(Duration::from_secs(10), || async {
            Ok((offline_for(dave.id).len() == 1).then_some(()))
        })
        .await?;
        assert_eq!(
            offline_for(bob.id),
            vec![json!("before")],
            "muted, yet pushed"
        );
        let (_, list) = bob.get("/v1/conversations").await?;
        assert_eq!(
            list["conversations"][0]["unread_count"], 2,
            "unread still counts"
        );

        // A mention still notifies through the mute.
        let (s, body) = alice
            .post(
                "/v1/messages",
                &json!({"to": {"user": bob.id}, "client_msg_id": "m1b",
                        "body": {"text": "bob, look"}, "mentions": [bob.id]}),
            )
            .await?;
        assert_eq!(s, 201, "{body}");
        eventually(Duration::from_secs(10), || async {
            Ok((offline_for(bob.id).len() == 2).then_some(()))
        })
        .await?;
        let mentioned: Vec<Value> = receiver
            .events()
            .iter()
            .filter(|(_, v)| v["data"]["recipient_id"] == bob.id)
            .map(|(_, v)| v["data"]["mentioned"].clone())
            .collect();
        assert_eq!(mentioned, vec![json!(false), json!(true)]);

        settings(&bob, dm, json!({"muted_until": null})).await?;
        alice.send_text(bob.id, "m3", "unmuted").await?;
        eventually(Duration::from_secs(10), || async {
            Ok((offline_for(bob.id).len() == 3).then_some(()))
        })
        .await?;
        assert_eq!(
            offline_for(bob.id),
            vec![json!("before"), json!("bob, look"), json!("unmuted")]
        );
    }
    Ok(())
}
