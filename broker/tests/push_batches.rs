//! Pushes handed to the broker in one large batch (6.4 MiB, far more than
//! the router's log of a filter holds) all reach their clean-session
//! subscribers, whose mailboxes they go into directly, in order, with no
//! connection closed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqchat_broker::{Broker, Settings};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_a_router_log_arrives_whole() -> TestResult {
    const USERS: u64 = 20;
    const PER_USER: usize = 20;
    const PAYLOAD: usize = 16 * 1024;

    let broker = Broker::start(
        Settings::default(),
        Arc::new(common::AnyUser),
        CancellationToken::new(),
    )?;
    let listener = mqchat_broker::bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let serving = broker.clone();
    tokio::spawn(async move { serving.serve_tcp(listener).await });

    // One clean-session subscriber per user, each counting what it gets.
    let mut readers = Vec::new();
    for user in 1..=USERS {
        let mut opts = MqttOptions::new(format!("sub-{user}"), "127.0.0.1", addr.port());
        opts.set_credentials(user.to_string(), "x");
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(opts, 64);
        client
            .subscribe(format!("users/{user}/#"), QoS::AtLeastOnce)
            .await?;
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
                break;
            }
        }
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < PER_USER {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => got.push(p.payload[0]),
                    Ok(_) => {}
                    Err(e) => return Err(format!("user {user}: {e}")),
                }
            }
            // Still connected: handed back so that the count below sees it.
            Ok((got, client, events))
        }));
    }

    // 400 pushes of 16 KiB, 6.4 MiB in one call (320 KiB per user, within
    // a mailbox's 1 MiB). Each user's pushes are numbered in the payload's
    // first byte.
    let mut batch = Vec::new();
    for n in 0..PER_USER {
        for user in 1..=USERS {
            let mut payload = vec![b'p'; PAYLOAD];
            payload[0] = n as u8;
            batch.push((user, "events", Bytes::from(payload)));
        }
    }
    let pusher = broker.clone();
    let sent = tokio::task::spawn_blocking(move || pusher.push_many(batch)).await?;
    assert_eq!(sent, USERS as usize * PER_USER);

    let expected: Vec<u8> = (0..PER_USER as u8).collect();
    let mut connected = Vec::new();
    for reader in readers {
        let (got, client, events) =
            tokio::time::timeout(Duration::from_secs(30), reader).await???;
        assert_eq!(got, expected, "every push, once, in order");
        connected.push((client, events));
    }
    assert_eq!(
        broker.connection_count(),
        USERS as usize,
        "nobody was closed"
    );
    Ok(())
}
