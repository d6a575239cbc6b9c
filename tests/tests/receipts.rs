//! Read markers, receipts and unread counts across devices and restarts.

use std::time::Duration;

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(2);

fn unread(list: &Value, conversation: u64) -> u64 {
    list["conversations"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == conversation))
        .and_then(|c| c["unread_count"].as_u64())
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn unread_counts_are_exact_across_devices_and_restarts() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("d");
    let server = TestServer::start_in(&dir, &[]).await?;
    let alice = server.user("alice").await?;
    let bob_phone = server.user("bob").await?;
    let bob_laptop = server.login("bob", "password-bob").await?;
    let mut alice_rx = server.mqtt(&alice).await?;
    let mut laptop_rx = server.mqtt(&bob_laptop).await?;

    let mut conv = 0;
    for i in 1..=5 {
        let (_, m) = alice
            .send_text(bob_phone.id, &format!("m{i}"), &format!("message {i}"))
            .await?;
        conv = m["conversation_id"].as_u64().unwrap_or(0);
    }
    let (_, list) = bob_phone.get("/v1/conversations").await?;
    assert_eq!(unread(&list, conv), 5);
    assert_eq!(list["conversations"][0]["read_seq"], 0);

    // The phone reads up to 3: alice gets a receipt, the laptop learns the marker.
    let (s, marker) = bob_phone
        .post(
            &format!("/v1/conversations/{conv}/read"),
            &json!({"seq": 3}),
        )
        .await?;
    assert_eq!((s, marker["read_seq"].as_u64()), (200, Some(3)));
    let receipt = alice_rx
        .next_of_type("receipt.read", WAIT)
        .await?
        .expect("alice gets a receipt");
    assert_eq!(
        (receipt["user_id"].as_u64(), receipt["seq"].as_u64()),
        (Some(bob_phone.id), Some(3))
    );
    let read = laptop_rx
        .next_of_type("conversation.read", WAIT)
        .await?
        .expect("laptop learns");
    assert_eq!(read["read_seq"], 3);
    let (_, list) = bob_laptop.get("/v1/conversations").await?;
    assert_eq!(unread(&list, conv), 2, "same count on every device");

    // The laptop, behind, marks 2: the marker never moves back.
    let (_, marker) = bob_laptop
        .post(
            &format!("/v1/conversations/{conv}/read"),
            &json!({"seq": 2}),
        )
        .await?;
    assert_eq!(marker["read_seq"], 3);
    // Past the end is clamped.
    let (_, marker) = bob_laptop
        .post(
            &format!("/v1/conversations/{conv}/read"),
            &json!({"seq": 99}),
        )
        .await?;
    assert_eq!(marker["read_seq"], 5);
    // Bob replying counts as reading, and his own message is never unread.
    alice.send_text(bob_phone.id, "m6", "message 6").await?;
    bob_phone.send_text(alice.id, "b1", "reply").await?;
    let (_, list) = bob_phone.get("/v1/conversations").await?;
    assert_eq!(unread(&list, conv), 0);
    let (_, list) = alice.get("/v1/conversations").await?;
    assert_eq!(unread(&list, conv), 1, "alice has bob's reply unread");

    // Restart: counts are stored, not computed in memory.
    drop(server);
    let server = TestServer::start_in(&dir, &[]).await?;
    let alice = server.login("alice", "password-alice").await?;
    let bob = server.login("bob", "password-bob").await?;
    let (_, list) = bob.get("/v1/conversations").await?;
    assert_eq!(unread(&list, conv), 0);
    let (_, list) = alice.get("/v1/conversations").await?;
    assert_eq!(unread(&list, conv), 1);
    Ok(())
}

#[tokio::test]
async fn delivery_receipts_follow_device_acks() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut alice_rx = server.mqtt(&alice).await?;
    let (_, m1) = alice.send_text(bob.id, "d1", "one").await?;
    alice.send_text(bob.id, "d2", "two").await?;
    let (s, _) = bob
        .post("/v1/sync/ack", &json!({"device_id": "phone", "cursor": 2}))
        .await?;
    assert_eq!(s, 204);
    let r = alice_rx
        .next_of_type("receipt.delivered", WAIT)
        .await?
        .expect("delivery receipt");
    assert_eq!(
        r,
        json!({"type": "receipt.delivered", "cursor": r["cursor"], "conversation_id": m1["conversation_id"], "user_id": bob.id, "seq": 2})
    );
    // Another device acking the same range adds nothing.
    bob.post("/v1/sync/ack", &json!({"device_id": "laptop", "cursor": 2}))
        .await?;
    assert!(alice_rx
        .next_of_type("receipt.delivered", Duration::from_millis(400))
        .await?
        .is_none());
    Ok(())
}

#[tokio::test]
async fn group_read_receipts_go_to_the_senders() -> Result<()> {
    let server = TestServer::start().await?;
    let a = server.user("aaa").await?;
    let b = server.user("bbb").await?;
    let c = server.user("ccc").await?;
    let (_, g) = a
        .post("/v1/groups", &json!({"name": "g", "members": [b.id, c.id]}))
        .await?;
    let gid = g["id"].as_u64().unwrap_or(0);
    let conv = g["conversation_id"].as_u64().unwrap_or(0);
    let mut a_rx = server.mqtt(&a).await?;
    let mut c_rx = server.mqtt(&c).await?;
    let (_, m) = a.send_group(gid, "a1", "from a").await?;
    let (s, _) = b
        .post(
            &format!("/v1/conversations/{conv}/read"),
            &json!({"seq": m["seq"]}),
        )
        .await?;
    assert_eq!(s, 200);
    assert!(
        a_rx.next_of_type("receipt.read", WAIT).await?.is_some(),
        "the sender gets it"
    );
    assert!(
        c_rx.next_of_type("receipt.read", Duration::from_millis(400))
            .await?
            .is_none(),
        "others don't"
    );
    Ok(())
}
