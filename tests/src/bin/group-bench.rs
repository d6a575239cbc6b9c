//! `group-bench`: one message to a large group, every member online.
//!
//! Starts a chatd (`CHATD_BIN`, default: the binary next to this one; use a
//! release build), creates N users, a group with all of them, connects every
//! member over MQTT (QoS 1), then sends M messages, one at a time, and
//! measures for each: the HTTP send latency (the commit that writes one inbox
//! row per member) and the time until the last member has it.
//!
//! ```sh
//! cargo build --release -p mqchat-chatsvc -p mqchat-e2e
//! CHATD_BIN=target/release/chatd target/release/group-bench --members 1000 --messages 100
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mqchat_e2e::{TestServer, TestUser};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

/// One message to a large, fully online group: send latency and time to the
/// last delivery.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Group members (the sender included), all online.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Messages sent, one after another.
    #[arg(long, default_value_t = 100)]
    messages: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    if std::env::var_os("CHATD_BIN").is_none() {
        eprintln!("note: CHATD_BIN not set; using the chatd next to this binary");
    }
    let server = TestServer::start_with(&[
        "--auth-ip-rate",
        "0",
        "--login-rate",
        "0",
        "--send-rate",
        "0",
        "--max-group-size",
        &(args.members + 1).to_string(),
    ])
    .await?;
    let server = Arc::new(server);

    // Users: register + login, a few at a time (argon2 dominates).
    let started = Instant::now();
    let mut users: Vec<TestUser> = Vec::with_capacity(args.members);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..args.members {
        let s = server.clone();
        set.spawn(async move { s.user(&format!("member{i:05}")).await });
        if set.len() >= 8 {
            if let Some(r) = set.join_next().await {
                users.push(r??);
            }
        }
        if i % 100 == 99 {
            eprint!("\rusers {}/{}", i + 1, args.members);
        }
    }
    while let Some(r) = set.join_next().await {
        users.push(r??);
    }
    users.sort_by_key(|u| u.id);
    eprintln!(
        "\rusers {} in {:.1} s",
        users.len(),
        started.elapsed().as_secs_f64()
    );

    let owner = users[0].clone();
    let member_ids: Vec<u64> = users[1..].iter().map(|u| u.id).collect();
    let (s, group) = owner
        .post(
            "/v1/groups",
            &json!({"name": "bench", "members": member_ids}),
        )
        .await?;
    if s != 201 {
        bail!("create group: {s} {group}");
    }
    let gid = group["id"].as_u64().unwrap_or(0);

    // Every member online, subscribed at QoS 1; each reports (seq, when).
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let started = Instant::now();
    let mut ready = 0;
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for u in &users {
        let mut opts = MqttOptions::new(format!("b{}", u.id), "127.0.0.1", server.mqtt.port());
        opts.set_credentials(u.id.to_string(), u.access_token.clone());
        opts.set_keep_alive(Duration::from_secs(60));
        opts.set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut events) = AsyncClient::new(opts, 64);
        let topic = format!("users/{}/events", u.id);
        let tx = tx.clone();
        let ready_tx = ready_tx.clone();
        tokio::spawn(async move {
            let _ = client.subscribe(topic, QoS::AtLeastOnce).await;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = Instant::now();
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) {
                            if v["message"]["body"]["bench"].is_u64() {
                                let _ = tx.send((
                                    v["message"]["body"]["bench"].as_u64().unwrap_or(0),
                                    now,
                                ));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("client error: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }
    while ready < users.len() {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await?
            .context("clients")?;
        ready += 1;
    }
    eprintln!(
        "{} members online in {:.1} s",
        ready,
        started.elapsed().as_secs_f64()
    );

    let mut send_latency = Vec::new();
    let mut last_delivery = Vec::new();
    let run = Instant::now();
    for n in 0..args.messages as u64 {
        let t0 = Instant::now();
        let (s, m) = owner
            .post("/v1/messages", &json!({"to": {"group": gid}, "client_msg_id": format!("bench-{n}"), "body": {"bench": n}}))
            .await?;
        let sent = t0.elapsed();
        if s != 201 {
            bail!("send: {s} {m}");
        }
        let mut got = 0;
        let mut last = t0;
        while got < users.len() {
            let (seq, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .context("deliveries stalled")?
                .context("channel closed")?;
            if seq == n {
                got += 1;
                last = last.max(at);
            }
        }
        send_latency.push(sent);
        last_delivery.push(last - t0);
        eprint!("\rmessage {}/{}", n + 1, args.messages);
    }
    let elapsed = run.elapsed();
    eprintln!();
    send_latency.sort();
    last_delivery.sort();
    let deliveries = (args.messages * users.len()) as f64;
    let report = json!({
        "members": users.len(),
        "messages": args.messages,
        "send_ms": {"p50": ms(percentile(&send_latency, 0.5)), "p99": ms(percentile(&send_latency, 0.99)), "max": ms(percentile(&send_latency, 1.0))},
        "last_delivery_ms": {"p50": ms(percentile(&last_delivery, 0.5)), "p99": ms(percentile(&last_delivery, 0.99)), "max": ms(percentile(&last_delivery, 1.0))},
        "deliveries_per_sec": deliveries / elapsed.as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "\n| members | messages | send p50 / p99 (ms) | last delivery p50 / p99 / max (ms) | deliveries/s |\n|---|---|---|---|---|\n| {} | {} | {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.0} |",
        users.len(),
        args.messages,
        ms(percentile(&send_latency, 0.5)),
        ms(percentile(&send_latency, 0.99)),
        ms(percentile(&last_delivery, 0.5)),
        ms(percentile(&last_delivery, 0.99)),
        ms(percentile(&last_delivery, 1.0)),
        deliveries / elapsed.as_secs_f64()
    );
    Ok(())
}
