//! The SDK's wire types against `schemas/mqchat.schema.json`, the
//! authoritative description of what the server sends.
//!
//! For each definition the SDK reads, an instance is generated from the
//! schema itself (every property, with the first allowed value), parsed into
//! the SDK type and written back: the result must be the same JSON. So a
//! field the SDK lacks, misnames or types differently fails here, and every
//! event type in the schema must parse into a typed [`Event`] variant rather
//! than [`Event::Other`].

use std::error::Error;

use mqchat_sdk::{
    Conversation, Event, Friend, FriendRequest, Group, GroupMember, GroupRef, HistoryPage, Message,
    Presence, SyncPage, User,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

type TestResult = Result<(), Box<dyn Error>>;

/// The schema bundle; the SDK lives in the mqchat workspace next to it.
fn schema() -> Result<Value, Box<dyn Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/mqchat.schema.json");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(serde_json::from_str(&text)?)
}

fn def<'a>(schema: &'a Value, name: &str) -> Result<&'a Value, Box<dyn Error>> {
    schema["$defs"]
        .get(name)
        .ok_or_else(|| format!("schema has no $defs/{name}").into())
}

/// A full instance of `node`: every property present, each with the first
/// value the schema allows (non-null where null is an option, so nested
/// objects get checked too).
fn instance(schema: &Value, node: &Value) -> Result<Value, Box<dyn Error>> {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/$defs/")
            .ok_or_else(|| format!("unsupported $ref {reference}"))?;
        return instance(schema, def(schema, name)?);
    }
    if let Some(value) = node.get("const") {
        return Ok(value.clone());
    }
    if let Some(first) = node.get("enum").and_then(|e| e.get(0)) {
        return Ok(first.clone());
    }
    if let Some(first) = node.get("oneOf").and_then(|o| o.get(0)) {
        return instance(schema, first);
    }
    if let Some(all) = node.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        // The node's own properties, then each part; `if`/`then` parts only
        // constrain (e.g. a system message's body) and add no fields.
        if node.get("properties").is_some() || node.get("type").is_some() {
            let mut own = node.clone();
            if let Some(o) = own.as_object_mut() {
                o.remove("allOf");
            }
            if let Value::Object(fields) = instance(schema, &own)? {
                merged.extend(fields);
            }
        }
        for part in all.iter().filter(|p| p.get("if").is_none()) {
            if let Value::Object(fields) = instance(schema, part)? {
                merged.extend(fields);
            }
        }
        return Ok(Value::Object(merged));
    }
    let kind = match &node["type"] {
        Value::String(kind) => kind.as_str(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if node.get("properties").is_some() => "object",
        other => return Err(format!("no type in {node} ({other})").into()),
    };
    Ok(match kind {
        "integer" => Value::from(node["minimum"].as_u64().unwrap_or(0).max(1)),
        "string" => Value::from("abc"),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        "array" => Value::Array(vec![instance(schema, &node["items"])?]),
        "object" => {
            let mut fields = Map::new();
            if let Some(properties) = node.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    fields.insert(name.clone(), instance(schema, property)?);
                }
            }
            // A free-form object (a message body): one text field.
            if fields.is_empty() && node.get("properties").is_none() {
                fields.insert("text".into(), Value::from("abc"));
            }
            Value::Object(fields)
        }
        other => return Err(format!("unsupported type {other}").into()),
    })
}

/// Parses the schema's instance of `name` as `T` and writes it back.
fn round_trip<T: DeserializeOwned + Serialize>(schema: &Value, name: &str) -> TestResult {
    let wire = instance(schema, def(schema, name)?)?;
    let parsed: T =
        serde_json::from_value(wire.clone()).map_err(|e| format!("{name}: {e}: {wire}"))?;
    assert_eq!(serde_json::to_value(parsed)?, wire, "{name}");
    Ok(())
}

#[test]
fn entities_match_the_schema() -> TestResult {
    let schema = schema()?;
    round_trip::<User>(&schema, "User")?;
    round_trip::<Message>(&schema, "Message")?;
    round_trip::<Conversation>(&schema, "Conversation")?;
    round_trip::<GroupRef>(&schema, "GroupRef")?;
    round_trip::<HistoryPage>(&schema, "HistoryPage")?;
    round_trip::<SyncPage>(&schema, "SyncPage")?;
    round_trip::<FriendRequest>(&schema, "FriendRequest")?;
    round_trip::<Friend>(&schema, "Friend")?;
    round_trip::<Presence>(&schema, "Presence")?;
    round_trip::<GroupMember>(&schema, "GroupMember")?;
    round_trip::<Group>(&schema, "Group")?;
    Ok(())
}

#[test]
fn every_event_in_the_schema_is_typed() -> TestResult {
    let schema = schema()?;
    let mut names: Vec<String> = def(&schema, "Event")?["oneOf"]
        .as_array()
        .ok_or("Event.oneOf is not a list")?
        .iter()
        .filter_map(|r| r["$ref"].as_str())
        .filter_map(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 11, "stored events: {names:?}");
    // The ephemeral pushes are not stored events but share the stream.
    names.extend(["PresencePush".to_owned(), "TypingPush".to_owned()]);
    for name in names {
        let wire = instance(&schema, def(&schema, &name)?)?;
        let event = Event::from_value(wire.clone())?;
        assert!(!matches!(event, Event::Other(_)), "{name} untyped: {wire}");
        assert_eq!(event.to_value(), wire, "{name}");
        assert_eq!(Some(event.kind()), wire["type"].as_str(), "{name}");
        assert_eq!(event.cursor(), wire["cursor"].as_u64(), "{name}");
        assert_eq!(
            event.is_ephemeral(),
            wire.get("cursor").is_none(),
            "{name}: ephemeral exactly when there is no cursor"
        );
    }
    Ok(())
}
