//! The OpenAPI document: the committed `schemas/openapi.json` is what the code
//! generates, every route is in it (and everything in it is routed), and the
//! server serves it.
//!
//! After changing a route or a wire type, regenerate the committed copy with
//! `UPDATE_OPENAPI=1 cargo test -p mqchat-chatsvc --test openapi` and review
//! the diff.

mod common;

use common::{app, App};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mqchat_chatsvc::api::openapi;
use serde_json::Value;
use tower::ServiceExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p mqchat-chatsvc --test openapi";

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json")
}

fn generated() -> Result<String, serde_json::Error> {
    Ok(format!("{}\n", openapi::document().to_pretty_json()?))
}

#[test]
fn committed_document_is_what_the_code_generates() -> TestResult {
    let generated = generated()?;
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated)?;
        return Ok(());
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        return Err(format!(
            "schemas/openapi.json differs from the generated document (first at line {}); \
             regenerate it with `{REGENERATE}` and review the diff",
            line + 1
        )
        .into());
    }
    Ok(())
}

/// `METHOD /path` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

/// `METHOD /path` of every `.route(...)` in `src/api/`, with the prefix
/// `api::router` mounts its module at, plus the broker's WebSocket route.
fn routed() -> Result<BTreeSet<String>, Box<dyn std::error::Error>> {
    let mut routes = BTreeSet::from(["GET /mqtt".to_owned()]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.path();
        let Some(module) = file.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let prefix = match module {
            "admin" => "/admin",
            "ops" | "web" | "openapi" => "",
            _ => "/v1",
        };
        let source = std::fs::read_to_string(&file)?;
        let mut rest = source.as_str();
        while let Some(start) = rest.find(".route(") {
            rest = &rest[start + ".route(".len()..];
            let args = balanced(rest).ok_or_else(|| format!("{module}: unbalanced .route("))?;
            let path = args
                .split('"')
                .nth(1)
                .ok_or_else(|| format!("{module}: .route( without a path literal"))?;
            let mut found = false;
            for method in METHODS {
                let call = format!("{method}(");
                let called = args.match_indices(&call).any(|(i, _)| {
                    !args[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if called {
                    routes.insert(format!("{} {prefix}{path}", method.to_uppercase()));
                    found = true;
                }
            }
            if !found {
                return Err(format!("{module}: no method in .route({args})").into());
            }
        }
    }
    Ok(routes)
}

/// The text up to the `)` that closes an already opened `(`.
fn balanced(s: &str) -> Option<&str> {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[test]
fn every_route_is_documented_and_every_operation_routed() -> TestResult {
    let doc = serde_json::to_value(openapi::document())?;
    let documented = documented(&doc);
    let routed = routed()?;
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes without an operation (add a #[utoipa::path] and list the handler in its \
         module's Doc): {undocumented:?}; operations without a route: {unrouted:?}"
    );
    Ok(())
}

/// `METHOD /path` of every route docs/http-api.md lists: each code span of
/// a table row's first cell that starts with a method (`POST /v1/messages
/// {to, ...}`, `GET /v1/sync?after=...`: the path is what comes before the
/// body or query).
fn in_http_api_md() -> Result<BTreeSet<String>, Box<dyn std::error::Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/http-api.md");
    let text = std::fs::read_to_string(path)?;
    let mut routes = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split(" | ").next().unwrap_or_default();
        for span in first_cell.split('`').skip(1).step_by(2) {
            let mut words = span.split_whitespace();
            let (Some(method), Some(path)) = (words.next(), words.next()) else {
                continue;
            };
            if METHODS.contains(&method.to_lowercase().as_str()) {
                let path = path.split('?').next().unwrap_or(path);
                routes.insert(format!("{method} {path}"));
            }
        }
    }
    Ok(routes)
}

#[test]
fn docs_http_api_md_lists_every_operation_and_no_other() -> TestResult {
    let documented = documented(&serde_json::to_value(openapi::document())?);
    let listed = in_http_api_md()?;
    let missing: Vec<_> = documented.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&documented).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/http-api.md lacks {missing:?}; it lists routes the API doesn't have: {unknown:?}"
    );
    Ok(())
}

#[test]
fn every_operation_says_who_may_call_it_and_what_it_answers() -> TestResult {
    let doc = serde_json::to_value(openapi::document())?;
    let public = [
        "POST /v1/auth/register",
        "POST /v1/auth/login",
        "POST /v1/auth/refresh",
    ];
    let mut ids = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let name = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"].as_str().unwrap_or_default();
            if let Some(other) = ids.insert(id.to_owned(), name.clone()) {
                panic!("{name} and {other} share the operationId {id:?}");
            }
            let scheme = if path.starts_with("/admin/") {
                Some("admin_token")
            } else if path.starts_with("/v1/") && !public.contains(&name.as_str()) {
                Some("bearer")
            } else {
                None
            };
            let security: Vec<_> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s.as_object().into_iter().flatten().map(|(k, _)| k.as_str()))
                .collect();
            assert_eq!(security, Vec::from_iter(scheme), "{name}: security");
            let responses = op["responses"]
                .as_object()
                .ok_or_else(|| format!("{name}: no responses"))?;
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.as_str() == "101"),
                "{name}: no success answer"
            );
            if scheme.is_some() {
                assert!(responses.contains_key("401"), "{name}: no 401");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"].is_object(),
                        "{name}: {status} has no body"
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_reference_resolves() -> TestResult {
    let doc = serde_json::to_value(openapi::document())?;
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("unexpected $ref {r}"))?;
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "$ref {r} points nowhere"
        );
    }
    Ok(())
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == "$ref" => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

async fn call(
    app: &App,
    method: &str,
    uri: &str,
) -> Result<(StatusCode, Vec<u8>), Box<dyn std::error::Error>> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())?;
    let res = app.router.clone().oneshot(req).await?;
    let status = res.status();
    Ok((status, res.into_body().collect().await?.to_bytes().to_vec()))
}

#[tokio::test]
async fn the_server_serves_the_document_and_answers_every_operation() -> TestResult {
    let app = app()?;
    let (status, body) = call(&app, "GET", "/openapi.json").await?;
    assert_eq!(status, StatusCode::OK);
    let served: Value = serde_json::from_slice(&body)?;
    assert_eq!(served, serde_json::to_value(openapi::document())?);

    // Unauthenticated and with made-up ids, every operation must reach its
    // handler or extractors, never the fallbacks.
    for op in documented(&served) {
        let (method, path) = op.split_once(' ').ok_or("operation without a path")?;
        let uri = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let (status, body) = call(&app, method, &uri).await?;
        let fallback = serde_json::from_slice::<Value>(&body)
            .is_ok_and(|v| v["error"]["message"] == "no such endpoint");
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && !fallback,
            "{op}: {method} {uri} is not routed ({status})"
        );
    }
    Ok(())
}
