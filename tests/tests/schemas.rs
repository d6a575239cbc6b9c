//! The JSON Schemas in `schemas/` match what a real chatd sends and accepts:
//! every payload below comes from a live server or is sent to one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Result};
use mqchat_e2e::TestServer;
use serde_json::{json, Value};

pub(crate) struct Schemas {
    bundle: Value,
}

impl Schemas {
    pub(crate) fn load() -> Result<Schemas> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/mqchat.schema.json");
        Ok(Schemas {
            bundle: serde_json::from_str(&std::fs::read_to_string(path)?)?,
        })
    }

    /// Validates `value` against `$defs/{name}`.
    pub(crate) fn check(&self, name: &str, value: &Value) -> Result<()> {
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

    // A reply mentioning bob, a forward of it, then its target recalled:
    // the quote, the mention flag and the forward's origin, in every shape.
    let (status, target) = alice.send_text(bob.id, "r-t", "target").await?;
    assert_eq!(status, 201, "{target}");
    let _ = bob_mqtt.next_event(Duration::from_secs(2)).await?;
    let reply = json!({"to": {"user": bob.id}, "client_msg_id": "r-1", "body": {"text": "re"},
        "reply_to": target["id"], "mentions": [bob.id]});
    schemas.check("SendRequest", &reply)?;
    let (status, replied) = alice.post("/v1/messages", &reply).await?;
    assert_eq!(status, 201, "{replied}");
    schemas.check("Message", &replied)?;
    let pushed = bob_mqtt
        .next_event(Duration::from_secs(2))
        .await?
        .ok_or_else(|| anyhow!("no push"))?;
    assert_eq!(pushed["mentioned"], true);
    schemas.check("Event", &pushed)?;
    let forward = json!({"to": {"user": bob.id}, "client_msg_id": "r-2"});
    schemas.check("ForwardRequest", &forward)?;
    let (status, copy) = bob
        .post(&format!("/v1/messages/{}/forward", replied["id"]), &forward)
        .await?;
    assert_eq!(status, 201, "{copy}");
    schemas.check("Message", &copy)?;
    let (status, _) = alice
        .post(&format!("/v1/messages/{}/recall", target["id"]), &json!({}))
        .await?;
    assert_eq!(status, 200);

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

    // Disappearing messages: the request, the timer's event (a stored one,
    // also in sync) and a message that carries `expires_at`.
    let ttl = json!({"message_ttl_seconds": 3600});
    schemas.check("UpdateConversation", &ttl)?;
    // On alice and bob's conversation (bob's newest is his notes to self,
    // where the forward went).
    let dm = target["conversation_id"].as_u64().unwrap_or(0);
    let (status, _) = bob.patch(&format!("/v1/conversations/{dm}"), &ttl).await?;
    assert_eq!(status, 200);
    let told = bob_mqtt
        .next_of_type("conversation.message_ttl", Duration::from_secs(2))
        .await?
        .ok_or_else(|| anyhow!("no conversation.message_ttl push"))?;
    schemas.check("Event", &told)?;
    let (status, expiring) = alice.send_text(bob.id, "s-ttl", "soon gone").await?;
    assert_eq!(status, 201);
    assert!(expiring["expires_at"].is_i64(), "{expiring}");
    schemas.check("Message", &expiring)?;
    let (_, page) = bob.get("/v1/sync?after=0").await?;
    schemas.check("SyncPage", &page)?;
    let (_, convs) = bob.get("/v1/conversations").await?;
    schemas.check("ConversationList", &convs)?;
    Ok(())
}

/// `sync.required`, which only a resumed persistent MQTT session over
/// the backlog bound gets.
#[tokio::test]
async fn sync_required_matches_its_schema() -> Result<()> {
    let schemas = Schemas::load()?;
    let server = TestServer::start_with(&["--mqtt-session-backlog", "1"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut opts = rumqttc::MqttOptions::new("kept", "127.0.0.1", server.mqtt.port());
    opts.set_credentials(bob.id.to_string(), bob.access_token.clone());
    opts.set_clean_session(false);
    let first = mqchat_e2e::Mqtt::connect(opts.clone()).await?;
    first
        .client
        .subscribe(
            format!("users/{}/events", bob.id),
            rumqttc::QoS::AtLeastOnce,
        )
        .await?;
    let mut first = first;
    let _ = first.next(Duration::from_secs(2)).await?; // the SUBACK
    drop(first);
    mqchat_e2e::eventually(Duration::from_secs(5), || async {
        let logs = server.logs();
        let ended = logs
            .iter()
            .any(|l| l.contains("client dropped") || l.contains("client disconnected"));
        Ok(ended.then_some(()))
    })
    .await?;
    for i in 0..2 {
        let (status, _) = alice
            .send_text(bob.id, &format!("s{i}"), "while away")
            .await?;
        assert_eq!(status, 201);
    }
    let mut again = mqchat_e2e::Mqtt::connect(opts).await?;
    let event = again
        .next_event(Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no sync.required"))?;
    assert_eq!(event["type"], "sync.required");
    schemas.check("SyncRequired", &event)?;
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
    for bad in [
        json!({}),
        json!({"message_ttl_seconds": 4}),
        json!({"message_ttl_seconds": 31_536_001}),
        json!({"message_ttl_seconds": -1}),
    ] {
        assert!(
            schemas.check("UpdateConversation", &bad).is_err(),
            "schema accepted {bad}"
        );
    }
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
    for line in std::fs::read_to_string(path)?
        .lines()
        // A single node serves none of the cluster's (tests/tests/cluster.rs).
        .take_while(|l| !l.starts_with("## Cluster nodes only"))
    {
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

/// Where ARCHITECTURE.md's leading path segments point: crate names and
/// chatsvc's layers. Any other module name is looked up as a `NAME.rs` or
/// `NAME/` anywhere in the sources (`writer::`, `conn::`, `registry::`).
const DOC_PATH_ROOTS: &[(&str, &str)] = &[
    ("chatsvc", "chatsvc/src/"),
    ("mqchat_chatsvc", "chatsvc/src/"),
    ("api", "chatsvc/src/api/"),
    ("domain", "chatsvc/src/domain/"),
    ("store", "chatsvc/src/store/"),
    ("broker", "broker/src/"),
    ("mqchat_broker", "broker/src/"),
    ("mqchat_sdk", "client-sdk/src/"),
];

/// Crates whose paths ARCHITECTURE.md names without them being ours.
const DOC_PATH_EXTERNAL: &[&str] = &[
    "rumqttd",
    "axum",
    "hyper",
    "hyper_util",
    "tokio",
    "rusqlite",
    "std",
];

/// The Rust sources of the crates ARCHITECTURE.md describes, by path
/// relative to the workspace root (`/`-separated).
struct SourceTree {
    files: Vec<(String, String)>,
}

impl SourceTree {
    fn load(root: &std::path::Path) -> Result<SourceTree> {
        fn walk(
            root: &std::path::Path,
            dir: &std::path::Path,
            out: &mut Vec<(String, String)>,
        ) -> Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    walk(root, &path, out)?;
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path
                        .strip_prefix(root)?
                        .to_string_lossy()
                        .replace('\\', "/");
                    out.push((rel, std::fs::read_to_string(&path)?));
                }
            }
            Ok(())
        }
        let mut files = Vec::new();
        for dir in ["chatsvc/src", "broker/src", "client-sdk/src"] {
            walk(root, &root.join(dir), &mut files)?;
        }
        Ok(SourceTree { files })
    }

    /// The files under `scopes`: each a directory (ending in `/`, `""` for
    /// all) or a file.
    fn in_scopes<'a>(&'a self, scopes: &'a [String]) -> impl Iterator<Item = &'a str> + 'a {
        self.files
            .iter()
            .filter(move |(path, _)| {
                scopes.iter().any(|s| {
                    if s.is_empty() || s.ends_with('/') {
                        path.starts_with(s.as_str())
                    } else {
                        path == s || path.starts_with(&format!("{}/", s.trim_end_matches(".rs")))
                    }
                })
            })
            .map(|(_, text)| text.as_str())
    }

    /// Module `name` inside `scopes`: a `name.rs` or `name/` at any depth
    /// below a directory scope (modules are often re-exported higher up),
    /// or an inline `mod name` in a file scope.
    fn submodule(&self, scopes: &[String], name: &str) -> Vec<String> {
        let mut found = BTreeSet::new();
        for scope in scopes {
            if scope.is_empty() || scope.ends_with('/') {
                for (path, _) in &self.files {
                    let Some(below) = path.strip_prefix(scope.as_str()) else {
                        continue;
                    };
                    let below = format!("/{below}");
                    if below.ends_with(&format!("/{name}.rs")) {
                        found.insert(path.clone());
                    } else if let Some(at) = below.find(&format!("/{name}/")) {
                        found.insert(format!("{scope}{}/", &below[1..at + 1 + name.len()]));
                    }
                }
            } else if self
                .in_scopes(std::slice::from_ref(scope))
                .any(|text| defines(text, "mod", name))
            {
                found.insert(scope.clone());
            }
        }
        found.into_iter().collect()
    }

    /// Whether an item `name` (fn, type, const, module...) is defined in
    /// `scopes`.
    fn defines_item(&self, scopes: &[String], name: &str) -> bool {
        const KINDS: &[&str] = &[
            "fn",
            "struct",
            "enum",
            "trait",
            "type",
            "const",
            "static",
            "mod",
            "macro_rules!",
        ];
        self.in_scopes(scopes)
            .any(|text| KINDS.iter().any(|kind| defines(text, kind, name)))
            || !self.submodule(scopes, name).is_empty()
    }

    /// Whether type `ty`, defined or implemented in `scopes`, has `member`:
    /// a method or associated item, a field, or a variant.
    fn has_member(&self, scopes: &[String], ty: &str, member: &str) -> bool {
        self.in_scopes(scopes)
            .filter(|text| {
                ["struct", "enum", "trait", "type"]
                    .iter()
                    .any(|kind| defines(text, kind, ty))
                    || text
                        .lines()
                        .any(|line| line.trim_start().starts_with("impl") && has_word(line, ty))
            })
            .any(|text| {
                ["fn", "const", "type"]
                    .iter()
                    .any(|kind| defines(text, kind, member))
                    || text.lines().any(|line| {
                        let line = line.trim_start();
                        let line = match line.strip_prefix("pub") {
                            Some(rest) if rest.starts_with('(') => {
                                rest.split_once(')').map_or(rest, |(_, r)| r).trim_start()
                            }
                            Some(rest) => rest.trim_start(),
                            None => line,
                        };
                        line.strip_prefix(member).is_some_and(|rest| {
                            rest.is_empty()
                                || [":", ",", "(", " {", "{", " ="]
                                    .iter()
                                    .any(|p| rest.starts_with(p))
                        })
                    })
            })
    }

    /// Whether a path from ARCHITECTURE.md names something the code
    /// defines: leading modules, then an item or `Type::member`.
    fn resolves(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split("::").collect();
        if DOC_PATH_EXTERNAL.contains(&segments[0]) {
            return true;
        }
        let (mut scopes, mut rest) =
            match DOC_PATH_ROOTS.iter().find(|(name, _)| *name == segments[0]) {
                Some((_, dir)) => (vec![(*dir).to_owned()], &segments[1..]),
                None => (vec![String::new()], &segments[..]),
            };
        while let Some((&segment, after)) = rest.split_first() {
            if segment.starts_with(char::is_uppercase) {
                return match after {
                    [] => self.defines_item(&scopes, segment),
                    [member] => self.has_member(&scopes, segment, member),
                    _ => false,
                };
            }
            if after.is_empty() {
                return self.defines_item(&scopes, segment);
            }
            scopes = self.submodule(&scopes, segment);
            if scopes.is_empty() {
                return false;
            }
            rest = after;
        }
        true
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `line` as a whole identifier.
fn has_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        !line[..at].ends_with(is_ident) && !line[at + word.len()..].starts_with(is_ident)
    })
}

/// Whether `text` has `kind name` (`fn send`, `struct Chat`) with `name`
/// a whole identifier.
fn defines(text: &str, kind: &str, name: &str) -> bool {
    let needle = format!("{kind} {name}");
    text.match_indices(&needle).any(|(at, _)| {
        !text[..at].ends_with(is_ident) && !text[at + needle.len()..].starts_with(is_ident)
    })
}

/// The Rust paths in a Markdown text's inline code (`store::Conn`,
/// `Chat::send`, `Broker::push(user_id, ...)`, `error::Json<T>`), outside
/// fenced blocks.
fn doc_paths(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let prose: String = markdown
        .lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect::<Vec<_>>()
        .join("\n");
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let end = code
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(code.len());
            let (path, rest) = code.split_at(end);
            let whole = rest.is_empty() || rest.starts_with(['(', '<']);
            (whole
                && path.contains("::")
                && path
                    .split("::")
                    .all(|s| !s.is_empty() && s.chars().all(is_ident)))
            .then(|| path.to_owned())
        })
        .collect()
}

/// Every Rust path ARCHITECTURE.md names (`store::conn::Hot`,
/// `Chat::send`, `mqchat_broker::Broker::push`) is still defined in the
/// code, so the walkthrough can't drift from it unnoticed.
#[test]
fn every_path_in_architecture_md_exists_in_the_code() -> Result<()> {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md"))?;
    let code = SourceTree::load(root)?;
    let paths = doc_paths(&doc);
    if paths.len() < 20 {
        return Err(anyhow!(
            "only {} paths found in ARCHITECTURE.md: is the parser broken?",
            paths.len()
        ));
    }
    let stale: Vec<&String> = paths.iter().filter(|p| !code.resolves(p)).collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "ARCHITECTURE.md names what the code no longer defines:\n  {}",
            stale
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        ))
    }
}
