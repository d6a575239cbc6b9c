//! kill -9 under a stream of sends, restart on the same data dir: every send
//! answered 2xx is there exactly once, in order, with gap-free seq and
//! cursors; in-flight sends retried with the same client_msg_id never
//! duplicate.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{bail, Result};
use mqchat_e2e::{TestServer, TestUser};
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
