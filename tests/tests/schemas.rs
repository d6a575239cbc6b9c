//! The JSON Schemas in `schemas/` match what a real chatd sends and accepts:
//! every payload below comes from a live server or is sent to one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Result};
use mqchat_e2e::TestServer;
use serde_json::{json, Value};

struct Schemas {
    bundle: Value,
}

impl Schemas {
    fn load() -> Result<Schemas> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/mqchat.schema.json");
        Ok(Schemas {
            bundle: serde_json::from_str(&std::fs::read_to_string(path)?)?,
        })
    }

    /// Validates `value` against `$defs/{name}`.
    fn check(&self, name: &str, value: &Value) -> Result<()> {
        let mut schema = self.bundle.clone();
        if schema["$defs"].get(name).is_none() {
            return Err(anyhow!("no $defs/{name} in the schema bundle"));
        }
        schema["$ref"] = json!(format!("#/$defs/{name}"));
        let validator =
            jsonschema::draft202012::new(&schema).map_err(|e| anyhow!("schema: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "{name} does not match {value}:\n  {}",
                errors.join("\n  ")
            ))
        }
    }
}

#[tokio::test]
async fn real_payloads_match_the_schemas() -> Result<()> {
    let schemas = Schemas::load()?;
    let server = TestServer::start().await?;
    let http = &server.http_client;

    let credentials = json!({"username": "alice", "password": "password-alice"});
    schemas.check("Credentials", &credentials)?;
    let user: Value = http
        .post(server.url("/v1/auth/register"))
        .json(&credentials)
        .send()
        .await?
        .json()
        .await?;
    schemas.check("User", &user)?;
    let grant: Value = http
        .post(server.url("/v1/auth/login"))
        .json(&credentials)
        .send()
        .await?
        .json()
        .await?;
    schemas.check("LoginGrant", &grant)?;

    let alice = server.login("alice", "password-alice").await?;
    let bob = server.user("bob").await?;
    let mut bob_mqtt = server.mqtt(&bob).await?;

    let send = json!({"to": {"user": bob.id}, "client_msg_id": "s-1", "body": {"text": "hi", "mentions": [bob.id]}});
    schemas.check("SendRequest", &send)?;
    let (status, message) = alice.post("/v1/messages", &send).await?;
    assert_eq!(status, 201);
    schemas.check("Message", &message)?;

    let pushed = bob_mqtt
        .next_event(Duration::from_secs(2))
        .await?
        .ok_or_else(|| anyhow!("no push"))?;
    schemas.check("Event", &pushed)?;

    let (_, page) = bob.get("/v1/sync?after=0").await?;
    schemas.check("SyncPage", &page)?;
    let (_, convs) = bob.get("/v1/conversations").await?;
    schemas.check("ConversationList", &convs)?;
    let conv = convs["conversations"][0]["id"].as_u64().unwrap_or(0);
    let (_, history) = bob
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    schemas.check("HistoryPage", &history)?;

    let ack = json!({"device_id": "phone", "cursor": 1});
    schemas.check("AckRequest", &ack)?;
    let (status, _) = bob.post("/v1/sync/ack", &ack).await?;
    assert_eq!(status, 204);
    let refresh = json!({"refresh_token": bob.refresh_token});
    schemas.check("RefreshRequest", &refresh)?;
    let regrant: Value = http
        .post(server.url("/v1/auth/refresh"))
        .json(&refresh)
        .send()
        .await?
        .json()
        .await?;
    schemas.check("LoginGrant", &regrant)?;
    let update = json!({"display_name": "Bob"});
    schemas.check("UpdateMe", &update)?;
    schemas.check("LogoutRequest", &json!({"everywhere": true}))?;

    // Groups: system messages, membership and the social payloads.
    let carol = server.user("carol").await?;
    let (s, group) = alice
        .post("/v1/groups", &json!({"name": "g", "members": [bob.id]}))
        .await?;
    assert_eq!(s, 201);
    schemas.check("Group", &group)?;
    let gid = group["id"].as_u64().unwrap_or(0);
    alice
        .post(
            &format!("/v1/groups/{gid}/members"),
            &json!({"user_ids": [carol.id]}),
        )
        .await?;
    alice
        .put(
            &format!("/v1/groups/{gid}/members/{}/role", bob.id),
            &json!({"role": "admin"}),
        )
        .await?;
    alice
        .patch(&format!("/v1/groups/{gid}"), &json!({"name": "renamed"}))
        .await?;
    let (_, mine) = alice.get("/v1/groups").await?;
    schemas.check("GroupList", &mine)?;
    let (s, req) = carol
        .post(
            "/v1/friends/requests",
            &json!({"user_id": alice.id, "note": "hi"}),
        )
        .await?;
    assert_eq!(s, 201);
    schemas.check("FriendRequest", &req)?;
    alice
        .post(
            &format!("/v1/friends/requests/{}/accept", req["id"]),
            &json!({}),
        )
        .await?;
    let (_, friends) = alice.get("/v1/friends").await?;
    schemas.check("FriendList", &friends)?;
    let (_, presence) = alice
        .get(&format!("/v1/presence?users={}", carol.id))
        .await?;
    schemas.check("PresenceList", &presence)?;
    let (_, m2) = alice.send_text(carol.id, "s-2", "to carol").await?;
    let (_, edited) = alice
        .patch(
            &format!("/v1/messages/{}", m2["id"]),
            &json!({"body": {"text": "edited"}}),
        )
        .await?;
    schemas.check("Message", &edited)?;
    let (_, tomb) = alice
        .post(&format!("/v1/messages/{}/recall", m2["id"]), &json!({}))
        .await?;
    schemas.check("Message", &tomb)?;
    carol
        .post(
            &format!("/v1/conversations/{}/read", m2["conversation_id"]),
            &json!({"seq": 1}),
        )
        .await?;
    carol
        .post("/v1/blocks", &json!({"user_id": bob.id}))
        .await?;
    let (_, found) = alice.get("/v1/search?q=hi").await?;
    schemas.check("SearchResults", &found)?;
    // The ephemeral pushes and the MQTT uplink's reply.
    let (_, dm) = alice.send_text(carol.id, "s-3", "typing soon").await?;
    let mut carol_rx = server.mqtt(&carol).await?;
    alice
        .post(
            &format!("/v1/conversations/{}/typing", dm["conversation_id"]),
            &json!({}),
        )
        .await?;
    let typing = carol_rx
        .next_on("typing", Duration::from_secs(2))
        .await?
        .ok_or_else(|| anyhow!("no typing push"))?;
    schemas.check("TypingPush", &typing)?;
    let alice_conn = server.mqtt(&alice).await?;
    let presence = carol_rx
        .next_on("presence", Duration::from_secs(2))
        .await?
        .ok_or_else(|| anyhow!("no presence push"))?;
    schemas.check("PresencePush", &presence)?;
    let up =
        json!({"to": {"user": carol.id}, "client_msg_id": "up-1", "body": {"text": "over mqtt"}});
    schemas.check("SendRequest", &up)?;
    alice_conn
        .client
        .publish(
            format!("users/{}/up/messages", alice.id),
            rumqttc::QoS::AtLeastOnce,
            false,
            up.to_string(),
        )
        .await?;
    let mut alice_conn = alice_conn;
    let reply = alice_conn
        .next_on("replies", Duration::from_secs(3))
        .await?
        .ok_or_else(|| anyhow!("no uplink reply"))?;
    schemas.check("UplinkReply", &reply)?;
    alice_conn
        .client
        .publish(
            format!("users/{}/up/messages", alice.id),
            rumqttc::QoS::AtLeastOnce,
            false,
            "{oops",
        )
        .await?;
    let bad = alice_conn
        .next_on("replies", Duration::from_secs(3))
        .await?
        .ok_or_else(|| anyhow!("no uplink error reply"))?;
    schemas.check("UplinkReply", &bad)?;

    // Every event anyone got, of every type, matches the Event schema.
    for user in [&alice, &bob, &carol] {
        for event in user.sync_all(0).await? {
            schemas.check("Event", &event)?;
        }
        let (_, convs) = user.get("/v1/conversations").await?;
        schemas.check("ConversationList", &convs)?;
    }
    let kinds: std::collections::BTreeSet<String> = carol
        .sync_all(0)
        .await?
        .iter()
        .chain(alice.sync_all(0).await?.iter())
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect();
    for kind in [
        "message.created",
        "message.edited",
        "message.recalled",
        "friend.request",
        "friend.added",
        "receipt.read",
        "conversation.read",
        "block.updated",
    ] {
        assert!(
            kinds.contains(kind),
            "no {kind} event was produced to check: {kinds:?}"
        );
    }

    // Error bodies of several kinds.
    for (status, body) in [
        alice
            .post(
                "/v1/messages",
                &json!({"to": {"user": 999}, "client_msg_id": "x", "body": {"text": "x"}}),
            )
            .await?,
        alice.post("/v1/messages", &json!({"nope": 1})).await?,
        alice.get("/v1/nope").await?,
        bob.get("/v1/conversations/999/messages").await?,
    ] {
        assert!(status >= 400);
        schemas.check("Error", &body)?;
    }
    let (_, unauth) = {
        let res = http.get(server.url("/v1/me")).send().await?;
        (res.status(), res.json::<Value>().await?)
    };
    schemas.check("Error", &unauth)?;
    Ok(())
}

#[test]
fn schemas_reject_what_the_server_rejects() -> Result<()> {
    let schemas = Schemas::load()?;
    for bad in [
        json!({"to": {"user": 2}, "body": {"text": "x"}}),
        json!({"to": {"user": 2}, "client_msg_id": "", "body": {"text": "x"}}),
        json!({"to": {"user": 2}, "client_msg_id": "a", "body": {}}),
        json!({"to": {"user": 2}, "client_msg_id": "a", "body": {"text": 1}}),
        json!({"to": {"user": 2, "group": 3}, "client_msg_id": "a", "body": {"text": "x"}}),
        json!({"to": {"user": 2}, "client_msg_id": "a", "body": {"text": "x"}, "extra": true}),
    ] {
        assert!(
            schemas.check("SendRequest", &bad).is_err(),
            "schema accepted {bad}"
        );
    }
    assert!(schemas
        .check("Event", &json!({"type": "message.created", "cursor": 0}))
        .is_err());
    Ok(())
}

/// One metric family: its type, HELP text, and label values by label name
/// (`None`: a label whose values docs/metrics.md does not list).
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    labels: BTreeMap<String, Option<BTreeSet<String>>>,
}

/// The list in docs/metrics.md: rows `| \`name\` | type | labels | help |`,
/// labels as `` `label`: `v1` `v2`; `open_label` ``.
fn documented_metrics() -> Result<BTreeMap<String, Family>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let backticked =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut families = BTreeMap::new();
    for line in std::fs::read_to_string(path)?.lines() {
        // No cell of the list holds a `|`.
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [name, kind, labels, help] = cells[..] else {
            continue;
        };
        let Some(name) = name.strip_prefix("`mqchat_") else {
            continue;
        };
        let mut family = Family {
            kind: kind.to_owned(),
            help: help.to_owned(),
            ..Family::default()
        };
        for label in labels.split(';').filter(|l| !l.trim().is_empty()) {
            let (label, values) = match label.split_once(':') {
                Some((l, v)) => (l, Some(backticked(v).into_iter().collect())),
                None => (label, None),
            };
            let label = backticked(label)
                .pop()
                .ok_or_else(|| anyhow!("metrics.md: label without backticks in {line}"))?;
            family.labels.insert(label, values);
        }
        families.insert(format!("mqchat_{}", name.trim_end_matches('`')), family);
    }
    Ok(families)
}

/// The families of a Prometheus text scrape, with every label value seen
/// (a histogram's `le` aside).
fn scraped_metrics(text: &str) -> Result<BTreeMap<String, Family>> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_owned()).or_default().help = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
        } else if !line.starts_with('#') {
            let (sample, labels) = match line.split_once('{') {
                Some((name, rest)) => (name, rest.rsplit_once('}').map_or("", |(l, _)| l)),
                None => (line.split_once(' ').map_or(line, |(n, _)| n), ""),
            };
            let family = ["", "_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| sample.strip_suffix(suffix))
                .find(|name| families.contains_key(*name))
                .ok_or_else(|| anyhow!("sample before its # TYPE: {line}"))?
                .to_owned();
            let family = families.entry(family).or_default();
            // Label values here are route templates, statuses and words:
            // none holds `",`.
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (label, value) = pair
                    .split_once("=\"")
                    .ok_or_else(|| anyhow!("bad label {pair} in {line}"))?;
                if label != "le" {
                    family
                        .labels
                        .entry(label.to_owned())
                        .or_insert_with(|| Some(BTreeSet::new()))
                        .get_or_insert_with(BTreeSet::new)
                        .insert(value.trim_end_matches('"').to_owned());
                }
            }
        }
    }
    Ok(families)
}

/// A real chatd's `/metrics`, after a little traffic, has exactly the
/// metrics docs/metrics.md lists: no undocumented one, none missing, and the
/// same types, HELP texts and label names; every label value seen is a
/// listed one. Along the way: the rate-limit counter is one metric with a
/// `limit` label, and online users follow connections without a scrape.
#[tokio::test]
async fn the_metrics_scrape_matches_docs_metrics_md() -> Result<()> {
    // One login per account per minute: the second attempt is limited.
    let server = TestServer::start_with(&["--login-rate", "1"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut bob_mqtt = server.mqtt(&bob).await?;
    alice.send_text(bob.id, "m1", "counted").await?;
    bob_mqtt
        .next_event(Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("bob got no push"))?;
    let limited = server
        .http_client
        .post(server.url("/v1/auth/login"))
        .json(&json!({"username": "alice", "password": "password-alice"}))
        .send()
        .await?
        .status();
    assert_eq!(limited, 429, "the second login within a minute");
    assert_eq!(
        server
            .metric("mqchat_rate_limited_total{limit=\"login\"}")
            .await?,
        1.0
    );
    mqchat_e2e::eventually(Duration::from_secs(5), || async {
        Ok((server.metric("mqchat_mqtt_online_users").await? == 1.0).then_some(()))
    })
    .await?;

    let text = server.scrape_metrics().await?;
    let scraped = scraped_metrics(&text)?;
    let documented = documented_metrics()?;
    let undocumented: Vec<&String> = scraped
        .keys()
        .filter(|n| !documented.contains_key(*n))
        .collect();
    let missing: Vec<&String> = documented
        .keys()
        .filter(|n| !scraped.contains_key(*n))
        .collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "not in docs/metrics.md: {undocumented:?}; documented but not served: {missing:?}\n{text}"
    );
    for (name, doc) in &documented {
        let got = &scraped[name];
        assert_eq!(got.kind, doc.kind, "{name}: type");
        assert_eq!(got.help, doc.help, "{name}: HELP");
        assert!(
            got.labels.keys().eq(doc.labels.keys()),
            "{name}: labels {:?}, documented {:?}",
            got.labels.keys(),
            doc.labels.keys()
        );
        for (label, values) in &doc.labels {
            let (Some(listed), Some(Some(seen))) = (values, got.labels.get(label)) else {
                continue;
            };
            assert!(
                seen.is_subset(listed),
                "{name}: {label} values {seen:?}, documented {listed:?}"
            );
        }
    }

    // Online users is a gauge kept as users come and go.
    drop(bob_mqtt);
    mqchat_e2e::eventually(Duration::from_secs(5), || async {
        Ok((server.metric("mqchat_mqtt_online_users").await? == 0.0).then_some(()))
    })
    .await?;
    Ok(())
}
