//! Hostile MQTT clients: wrong credentials, someone else's identity, filters
//! outside their own space, publishes into other users' topics, client-id
//! takeover. Each must be refused and must see nothing.

use std::time::Duration;

use anyhow::Result;
use mqchat_e2e::{Mqtt, TestServer, TestUser};
use rumqttc::{MqttOptions, QoS, SubscribeReasonCode};

fn opts(server: &TestServer, client_id: &str, username: &str, password: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", server.mqtt.port());
    o.set_credentials(username, password);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Alice sends bob a message; returns once bob's own client has it.
async fn deliver_to_bob(
    alice: &TestUser,
    bob: &TestUser,
    bob_rx: &mut Mqtt,
    id: &str,
) -> Result<()> {
    let (s, _) = alice.send_text(bob.id, id, "secret").await?;
    assert_eq!(s, 201);
    assert!(
        bob_rx.next_event(Duration::from_secs(2)).await?.is_some(),
        "bob must get it"
    );
    Ok(())
}

#[tokio::test]
async fn bad_credentials_are_refused_with_connack_codes() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;

    let tampered = {
        let mut t = alice.access_token.clone();
        t.pop();
        t.push('x');
        t
    };
    let alice_id = alice.id.to_string();
    for (username, password, expected) in [
        (alice_id.as_str(), "not-a-token", "BadUserNamePassword"),
        (alice_id.as_str(), tampered.as_str(), "BadUserNamePassword"),
        // Alice's (valid) token presented as bob: an identity it does not grant.
        (
            &bob.id.to_string(),
            alice.access_token.as_str(),
            "NotAuthorized",
        ),
        ("not-a-number", alice.access_token.as_str(), "NotAuthorized"),
    ] {
        let err = server.mqtt_refusal(username, password).await?;
        assert!(err.contains(expected), "{username}: {err}");
    }

    // No credentials at all.
    let mut anon = MqttOptions::new("x5", "127.0.0.1", server.mqtt.port());
    anon.set_keep_alive(Duration::from_secs(30));
    let err = Mqtt::connect(anon)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("BadUserNamePassword"), "{err}");
    Ok(())
}

#[tokio::test]
async fn subscriptions_outside_ones_own_space_are_refused_and_see_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mallory = server.user("mallory").await?;
    let mut bob_rx = server.mqtt(&bob).await?;

    let mut hostile = Mqtt::connect(opts(
        &server,
        "m",
        &mallory.id.to_string(),
        &mallory.access_token,
    ))
    .await?;
    for filter in [
        format!("users/{}/#", bob.id),
        format!("users/{}/events", bob.id),
        "#".to_owned(),
        "+/#".to_owned(),
        "users/#".to_owned(),
        "users/+/#".to_owned(),
        "users/+/events".to_owned(),
        "$SYS/#".to_owned(),
        format!("$share/g/users/{}/#", bob.id),
        "$share/g/#".to_owned(),
        format!("users/0{}/#", bob.id),
    ] {
        let codes = hostile.subscribe_ack(&filter, QoS::AtLeastOnce).await?;
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Failure],
            "{filter} must be refused"
        );
    }
    deliver_to_bob(&alice, &bob, &mut bob_rx, "s1").await?;
    let leaked = hostile.next_event(Duration::from_millis(500)).await?;
    assert!(leaked.is_none(), "mallory saw {leaked:?}");

    // Mixed SUBSCRIBE: the allowed filter is granted, the others refused, in order.
    hostile
        .client
        .subscribe_many([
            rumqttc::SubscribeFilter::new(format!("users/{}/#", bob.id), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new(format!("users/{}/#", mallory.id), QoS::ExactlyOnce),
            rumqttc::SubscribeFilter::new("#".to_owned(), QoS::AtMostOnce),
        ])
        .await?;
    let codes = loop {
        match hostile.next(Duration::from_secs(5)).await? {
            Some(mqchat_e2e::Seen::SubAck(c)) => break c,
            Some(_) => {}
            None => anyhow::bail!("no SUBACK"),
        }
    };
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Failure,
            // QoS 2 requested: granted QoS 1, the highest the server pushes at.
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
        ]
    );
    deliver_to_bob(&alice, &bob, &mut bob_rx, "s2").await?;
    assert!(hostile
        .next_event(Duration::from_millis(500))
        .await?
        .is_none());
    Ok(())
}

#[tokio::test]
async fn publishes_into_other_users_topics_are_dropped() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;
    let mallory = server.user("mallory").await?;
    let mut bob_rx = server.mqtt(&bob).await?;
    let mut hostile = server.mqtt(&mallory).await?;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        hostile
            .client
            .publish(
                format!("users/{}/events", bob.id),
                qos,
                false,
                br#"{"type":"message.created","cursor":1}"#.to_vec(),
            )
            .await?;
        // Even into one's own space: uplink is HTTP.
        hostile
            .client
            .publish(
                format!("users/{}/events", mallory.id),
                qos,
                false,
                b"{}".to_vec(),
            )
            .await?;
    }
    assert!(
        bob_rx
            .next_event(Duration::from_millis(700))
            .await?
            .is_none(),
        "bob got a forged event"
    );
    assert!(hostile
        .next_event(Duration::from_millis(100))
        .await?
        .is_none());
    // The hostile connection was acknowledged, not dropped (3.1.1 §3.3.5): it
    // still works.
    hostile
        .client
        .publish("users/1/x", QoS::AtLeastOnce, false, b"x".to_vec())
        .await?;
    assert!(hostile
        .next(Duration::from_millis(300))
        .await?
        .is_none_or(|s| !matches!(s, mqchat_e2e::Seen::Error(_))));
    Ok(())
}

#[tokio::test]
async fn a_client_id_can_not_kick_another_users_session() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mallory = server.user("mallory").await?;
    let mut bob_phone = Mqtt::connect(opts(
        &server,
        "phone",
        &bob.id.to_string(),
        &bob.access_token,
    ))
    .await?;
    bob_phone
        .subscribe_ack(&format!("users/{}/#", bob.id), QoS::AtLeastOnce)
        .await?;
    // Mallory connects with bob's client id.
    let _mallory_phone = Mqtt::connect(opts(
        &server,
        "phone",
        &mallory.id.to_string(),
        &mallory.access_token,
    ))
    .await?;
    let (s, _) = alice.send_text(bob.id, "k1", "still there?").await?;
    assert_eq!(s, 201);
    let got = bob_phone.next_event(Duration::from_secs(2)).await?;
    assert!(
        got.is_some(),
        "bob's session was taken over by another user's client id"
    );

    // The same user reusing its own client id does take over (MQTT rule).
    let _bob_again = Mqtt::connect(opts(
        &server,
        "phone",
        &bob.id.to_string(),
        &bob.access_token,
    ))
    .await?;
    bob_phone.wait_closed(Duration::from_secs(3)).await?;
    Ok(())
}
