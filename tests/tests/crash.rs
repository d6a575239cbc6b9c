//! kill -9 under a stream of sends, restart on the same data dir: every send
//! answered 2xx is there exactly once, in order, with gap-free seq and
//! cursors; in-flight sends retried with the same client_msg_id never
//! duplicate; and receivers online through the SDK's event stream (MQTT over
//! TCP and over WebSocket) end up with every event once, in cursor order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use mqchat_e2e::{free_ports, TestServer, TestUser};
use mqchat_sdk::{Backoff, Client, Event, StreamOptions, Transport};
use serde_json::Value;

const SENDERS: usize = 6;
/// The senders go as fast as they can; the per-user send limit is not what
/// this test is about.
const UNLIMITED: &[&str] = &["--send-rate", "0"];
const ROUNDS: usize = 3;

/// Cheap varying delay without a rand dependency.
fn jitter_ms(round: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    300 + (nanos / 1000 + round as u64 * 97) % 700
}

#[tokio::test]
async fn acknowledged_sends_survive_sigkill() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let mut server = TestServer::start_in(&dir, UNLIMITED).await?;
    let mut names: Vec<String> = (0..SENDERS).map(|i| format!("sender{i}")).collect();
    names.push("bob".into());
    for n in &names {
        server.user(n).await?;
    }
    // client_msg_id -> acknowledged message; and every id ever attempted.
    let mut acked: HashMap<String, Value> = HashMap::new();
    let mut attempted: Vec<(usize, String)> = Vec::new();

    for round in 0..ROUNDS {
        let mut users = Vec::new();
        for n in &names {
            users.push(server.login(n, &format!("password-{n}")).await?);
        }
        let bob = users[SENDERS].clone();
        let mut tasks = Vec::new();
        for (s, sender) in users.iter().take(SENDERS).cloned().enumerate() {
            let bob_id = bob.id;
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                let mut tried = Vec::new();
                for n in 0.. {
                    let id = format!("r{round}-s{s}-{n}");
                    tried.push(id.clone());
                    match sender
                        .send_text(bob_id, &id, &format!("round {round} sender {s} #{n}"))
                        .await
                    {
                        Ok((201, m)) => acks.push((id, m)),
                        Ok((status, body)) => {
                            return Err(anyhow::anyhow!("unexpected {status}: {body}"))
                        }
                        // The server died under us: stop.
                        Err(_) => break,
                    }
                }
                Ok::<_, anyhow::Error>((s, acks, tried))
            }));
        }
        tokio::time::sleep(Duration::from_millis(jitter_ms(round))).await;
        server.kill9().await?;
        for t in tasks {
            let (s, acks, tried) = t.await??;
            for (id, m) in acks {
                acked.insert(id, m);
            }
            attempted.extend(tried.into_iter().map(|id| (s, id)));
        }
        server = TestServer::start_in(&dir, UNLIMITED).await?;
    }
    eprintln!(
        "{} sends acknowledged, {} attempted over {ROUNDS} kills",
        acked.len(),
        attempted.len()
    );
    if acked.len() < 50 {
        bail!(
            "only {} sends acknowledged; the test did not exercise much",
            acked.len()
        );
    }

    // Retry every attempted send with its id: committed ones come back as
    // the original (200), lost in-flight ones are stored now (201).
    let mut users = Vec::new();
    for n in &names {
        users.push(server.login(n, &format!("password-{n}")).await?);
    }
    let bob: &TestUser = &users[SENDERS];
    for (s, id) in &attempted {
        let (status, m) = users[*s].send_text(bob.id, id, "retry").await?;
        match acked.get(id) {
            Some(original) => {
                assert_eq!(
                    status, 200,
                    "{id} was acknowledged, so a retry is a duplicate"
                );
                assert_eq!(&m, original, "{id}: retry must return the original");
            }
            None => assert!(status == 200 || status == 201, "{id}: {status} {m}"),
        }
    }

    // Bob's inbox: every attempted id exactly once, cursors 1..n.
    let events = bob.sync_all(0).await?;
    assert_eq!(
        events.len(),
        attempted.len(),
        "each attempted send stored exactly once"
    );
    let mut seen = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["cursor"], (i + 1) as u64, "inbox cursor gap at {i}");
        let id = e["message"]["client_msg_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            seen.insert(id.clone(), e["message"].clone()).is_none(),
            "{id} twice"
        );
    }
    for (id, m) in &acked {
        assert_eq!(
            seen.get(id),
            Some(m),
            "acknowledged {id} missing or changed"
        );
    }
    // Search finds what was acknowledged: sends index their text in
    // batches, and what was still staged at a kill is indexed at restart.
    // Each sender's last acknowledged send before each kill is the likeliest
    // to have been staged then.
    let mut last: HashMap<(usize, usize), (u64, &Value)> = HashMap::new();
    for (id, m) in &acked {
        let parts: Vec<usize> = id
            .split(['r', '-', 's'])
            .filter_map(|p| p.parse().ok())
            .collect();
        let (round, s, n) = (parts[0], parts[1], parts[2] as u64);
        let entry = last.entry((round, s)).or_insert((n, m));
        if n >= entry.0 {
            *entry = (n, m);
        }
    }
    for ((round, s), (n, m)) in &last {
        let q = format!("round%20{round}%20sender%20{s}%20%23{n}");
        let (status, found) = bob.get(&format!("/v1/search?q={q}")).await?;
        assert_eq!(status, 200, "{found}");
        let ids: Vec<&Value> = found["messages"]
            .as_array()
            .map(|a| a.iter().map(|m| &m["id"]).collect())
            .unwrap_or_default();
        assert!(
            ids.contains(&&m["id"]),
            "round {round} sender {s} #{n} not found by search: {found}"
        );
    }

    // Per sender: seq gap-free and in the order sends were made.
    let mut by_conv: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    for e in &events {
        let m = &e["message"];
        by_conv
            .entry(m["conversation_id"].as_u64().unwrap_or(0))
            .or_default()
            .push((
                m["seq"].as_u64().unwrap_or(0),
                m["client_msg_id"].as_str().unwrap_or_default().to_owned(),
            ));
    }
    for (conv, msgs) in by_conv {
        let seqs: Vec<u64> = msgs.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "conversation {conv} seq"
        );
        // Ids of acknowledged sends appear in send order.
        let order: Vec<&String> = msgs
            .iter()
            .map(|(_, id)| id)
            .filter(|id| acked.contains_key(*id))
            .collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|id| {
            let parts: Vec<u64> = id
                .split(['r', '-', 's'])
                .filter_map(|p| p.parse().ok())
                .collect();
            (parts.first().copied(), parts.get(2).copied())
        });
        assert_eq!(
            order, sorted,
            "conversation {conv}: acknowledged sends out of order"
        );
    }
    Ok(())
}

/// Two receivers stay online through the SDK while chatd is killed with
/// SIGKILL three times under concurrent sends and restarted on the same
/// ports: each stream reconnects, syncs, and delivers every event of its
/// user's inbox exactly once, in cursor order, with no gap.
#[tokio::test]
async fn sdk_streams_stay_gap_free_and_duplicate_free_across_sigkill() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let (http, mqtt) = free_ports()?;
    let mut server = TestServer::start_at(&dir, &http, &mqtt, UNLIMITED).await?;
    let base = server.url("");
    let names = ["killer0", "killer1", "killer2", "bob", "carol"];
    for n in names {
        Client::register(&base, n, &format!("password-{n}")).await?;
    }
    let fast = || {
        StreamOptions::default().reconnect_backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(400),
        ))
    };
    // bob over TCP, carol over WebSocket; each stream's cursors collected.
    let mut collectors = Vec::new();
    for (name, transport) in [
        ("bob", Transport::Tcp(mqtt.clone())),
        ("carol", Transport::websocket_for(&base)?),
    ] {
        let client = Client::login(&base, name, &format!("password-{name}")).await?;
        let mut stream = client.connect(transport, fast())?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, String)>::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = stream.recv().await {
                // Transport errors while the server is down are reported and
                // the stream goes on reconnecting.
                if let Ok(Event::MessageCreated {
                    cursor, message, ..
                }) = event
                {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((cursor, message.client_msg_id));
                }
            }
        });
        collectors.push((name, seen, task));
    }

    let mut sent = 0usize;
    for round in 0..ROUNDS {
        let mut senders = Vec::new();
        for n in &names[..3] {
            senders.push(server.login(n, &format!("password-{n}")).await?);
        }
        let bob = server.login("bob", "password-bob").await?;
        let carol = server.login("carol", "password-carol").await?;
        let mut tasks = Vec::new();
        for (s, sender) in senders.into_iter().enumerate() {
            let to = [bob.id, carol.id];
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                loop {
                    let id = format!("k{round}-{s}-{n}");
                    match sender.send_text(to[n % 2], &id, "while killing").await {
                        Ok((201, _)) => n += 1,
                        Ok((status, body)) => bail!("unexpected {status}: {body}"),
                        Err(_) => return Ok(n),
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(jitter_ms(round))).await;
        server.kill9().await?;
        for t in tasks {
            sent += t.await??;
        }
        server = TestServer::start_at(&dir, &http, &mqtt, UNLIMITED).await?;
    }
    if sent < 30 {
        bail!("only {sent} sends acknowledged; the test did not exercise much");
    }

    for (name, seen, task) in collectors {
        let user = server.login(name, &format!("password-{name}")).await?;
        let inbox: Vec<(u64, String)> = user
            .sync_all(0)
            .await?
            .iter()
            .map(|e| {
                (
                    e["cursor"].as_u64().unwrap_or(0),
                    e["message"]["client_msg_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let want = inbox.len();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
            if got >= want {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(anyhow!("{name}'s stream has {got} of {want} events"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A moment more, for a duplicate that would trail behind.
        tokio::time::sleep(Duration::from_millis(500)).await;
        task.abort();
        let got = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(
            got, inbox,
            "{name}: the stream must be the inbox, once, in order"
        );
        let cursors: Vec<u64> = got.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            cursors,
            (1..=want as u64).collect::<Vec<_>>(),
            "{name}: cursor gap"
        );
        eprintln!("{name}: {want} events through {ROUNDS} kills, none twice, none missing");
    }
    Ok(())
}
