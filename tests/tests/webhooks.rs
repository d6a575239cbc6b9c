//! Outgoing webhooks against a real HTTP receiver on loopback: signed,
//! offline push, retried, surviving a restart, replayable.

use std::time::Duration;

use anyhow::{anyhow, Result};
use mqchat_e2e::webhooks::{verify, Receiver};
use mqchat_e2e::{eventually, TestServer};
use serde_json::json;

#[tokio::test]
async fn signed_events_and_offline_push() -> Result<()> {
    let receiver = Receiver::default();
    let addr = receiver.start("127.0.0.1:0").await?;
    let server = TestServer::start().await?;
    let (s, hook) = server
        .admin_post(
            "/admin/webhooks",
            json!({"url": format!("http://{addr}/hook")}),
        )
        .await?;
    assert_eq!(s, 201, "{hook}");
    let secret = hook["secret"]
        .as_str()
        .ok_or_else(|| anyhow!("no secret"))?
        .to_owned();

    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    // bob is offline: a message.created and an offline push for him.
    let (_, m) = alice.send_text(bob.id, "w1", "are you there?").await?;
    let got = eventually(Duration::from_secs(10), || async {
        let e = receiver.events();
        Ok((e.len() >= 2).then_some(e))
    })
    .await?;
    let created = got
        .iter()
        .find(|(_, v)| v["type"] == "message.created")
        .ok_or_else(|| anyhow!("no message.created"))?;
    assert_eq!(created.1["data"]["message"], m);
    let offline = got
        .iter()
        .find(|(_, v)| v["type"] == "user.offline_message")
        .ok_or_else(|| anyhow!("no offline push"))?;
    assert_eq!(offline.1["data"]["recipient_id"], bob.id);
    assert_eq!(offline.1["data"]["sender"]["username"], "alice");
    assert_eq!(offline.1["data"]["preview"], "are you there?");
    assert_eq!(offline.1["data"]["unread_count"], 1);
    assert_eq!(offline.0["x-mqchat-event"], "user.offline_message");
    for (headers, body) in receiver.raw() {
        assert!(verify(&secret, &headers, &body), "bad signature on {body}");
        assert!(!verify("wrong-secret", &headers, &body));
    }

    // Once bob is online, no offline push.
    let _bob_rx = server.mqtt(&bob).await?;
    alice.send_text(bob.id, "w2", "hello again").await?;
    eventually(Duration::from_secs(10), || async {
        Ok((receiver.events().len() >= 3).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let offline_count = receiver
        .events()
        .iter()
        .filter(|(_, v)| v["type"] == "user.offline_message")
        .count();
    assert_eq!(offline_count, 1);
    Ok(())
}

#[tokio::test]
async fn deliveries_retry_survive_restarts_and_replay() -> Result<()> {
    // The receiver's port is fixed before it runs: first nobody listens.
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    let receiver_addr = probe.local_addr()?;
    drop(probe);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("d");
    let mut server = TestServer::start_in(&dir, &[]).await?;
    let (s, hook) = server
        .admin_post(
            "/admin/webhooks",
            json!({"url": format!("http://{receiver_addr}/hook"), "events": ["message.created"]}),
        )
        .await?;
    assert_eq!(s, 201);
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    for i in 0..3 {
        alice
            .send_text(
                bob.id,
                &format!("r{i}"),
                "queued while the receiver is down",
            )
            .await?;
    }
    // Crash with everything undelivered; come back; the receiver appears
    // and first answers 500 once.
    server.kill9().await?;
    let receiver = Receiver::default();
    *receiver
        .fail_first
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = 1;
    receiver.start(&receiver_addr.to_string()).await?;
    server = TestServer::start_in(&dir, &[]).await?;
    let got = eventually(Duration::from_secs(20), || async {
        let e = receiver.events();
        Ok((e.len() >= 3).then_some(e))
    })
    .await?;
    let ids: Vec<String> = got
        .iter()
        .map(|(_, v)| {
            v["data"]["message"]["client_msg_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["r0", "r1", "r2"], "all three, once each: {ids:?}");

    // Replay from the start: the same deliveries (same ids) again.
    let (s, r) = server
        .admin_post(
            &format!("/admin/webhooks/{}/replay", hook["id"]),
            json!({"after": 0}),
        )
        .await?;
    assert_eq!((s, r["requeued"].as_u64()), (200, Some(3)));
    let again = eventually(Duration::from_secs(10), || async {
        let e = receiver.events();
        Ok((e.len() >= 6).then_some(e))
    })
    .await?;
    let first: Vec<&str> = again[..3]
        .iter()
        .map(|(h, _)| h["x-mqchat-delivery"].to_str().unwrap_or(""))
        .collect();
    let replayed: Vec<&str> = again[3..]
        .iter()
        .map(|(h, _)| h["x-mqchat-delivery"].to_str().unwrap_or(""))
        .collect();
    let (mut a, mut b) = (first.clone(), replayed.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "a replay re-sends the same delivery ids");
    Ok(())
}
