//! The browser client: the demo page at `/`, the JS SDK at `/sdk/mqchat.js`,
//! and MQTT.js at `/vendor/mqtt.min.js` from a directory the operator
//! provides (`npm install mqtt` puts it in `node_modules/mqtt/dist`). The page
//! and SDK are compiled in; `--web-dir` serves them from disk instead, for
//! working on them without rebuilding.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::SharedState;

const INDEX: &str = include_str!("../../../client-sdk/web/index.html");
const SDK: &str = include_str!("../../../client-sdk/js/mqchat.js");

/// Where the web files come from.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Serve `index.html` and `mqchat.js` from here instead of the built-in copies.
    pub dir: Option<PathBuf>,
    /// Directory holding `mqtt.min.js` (MQTT.js's browser bundle).
    pub vendor_dir: Option<PathBuf>,
}

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/", get(index))
        .route("/sdk/mqchat.js", get(sdk))
        .route("/vendor/mqtt.min.js", get(mqtt_js))
}

/// These routes in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(index, sdk, mqtt_js))]
pub(super) struct Doc;

fn file(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
        ],
        body.into(),
    )
        .into_response()
}

/// `sha256-...` sources for every inline `<tag>` block of `html` (blocks
/// with a `src` load from a URL, which `'self'` covers).
fn inline_hashes(html: &str, tag: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut sources = String::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end_of_tag) = after.find('>') else {
            break;
        };
        let attributes = &after[..end_of_tag];
        let body = &after[end_of_tag + 1..];
        let Some(end) = body.find(&close) else { break };
        if !attributes.contains("src=") {
            let digest = sha2::Sha256::digest(&body.as_bytes()[..end]);
            sources.push_str(" 'sha256-");
            sources.push_str(&base64::engine::general_purpose::STANDARD.encode(digest));
            sources.push('\'');
        }
        rest = &body[end + close.len()..];
    }
    sources
}

/// The page's Content-Security-Policy: scripts and styles only from this
/// origin and the page's own inline blocks (by hash, so nothing injected
/// runs, nor does an uploaded HTML file opened from a `blob:` URL, which
/// inherits this policy); connections only to this origin (the API and the
/// MQTT WebSocket); images from this origin and the `blob:`s the page makes
/// of downloads; never framed.
fn content_security_policy(html: &str, host: Option<&str>) -> String {
    // The WebSocket origin, spelled out: older browsers don't count
    // `ws://` as `'self'`. A Host that isn't a plain host[:port] is left
    // out (it could smuggle in directives).
    let ws = host
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'{scripts}; style-src 'self'{styles}; \
         img-src 'self' blob: data:; connect-src 'self'{ws}; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'",
        scripts = inline_hashes(html, "script"),
        styles = inline_hashes(html, "style"),
    )
}

async fn from_dir_or(
    dir: Option<&PathBuf>,
    name: &str,
    builtin: &'static str,
) -> Result<String, ApiError> {
    match dir {
        Some(d) => tokio::fs::read_to_string(d.join(name)).await.map_err(|_| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("{name} not found in --web-dir"),
            )
        }),
        None => Ok(builtin.to_owned()),
    }
}

/// `GET /` → the demo web client.
///
/// With a `Content-Security-Policy` (scripts and styles from this origin
/// and the page's own inline blocks by hash, connections to this origin
/// and its WebSocket, no framing), `X-Frame-Options: DENY`,
/// `Referrer-Policy: no-referrer` and `X-Content-Type-Options: nosniff`.
#[utoipa::path(
    get,
    tag = "web",
    path = "/",
    operation_id = "web_client",
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html; charset=utf-8"),
        (status = 404, description = "`not_found`: `index.html` is missing from `--web-dir`.", body = ErrorBody),
    )
)]
async fn index(State(state): State<SharedState>, request: HeaderMap) -> Result<Response, ApiError> {
    let body = from_dir_or(state.web.dir.as_ref(), "index.html", INDEX).await?;
    let host = request.get(HOST).and_then(|h| h.to_str().ok());
    let policy = content_security_policy(&body, host);
    let mut res = file("text/html; charset=utf-8", body);
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert(CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(res)
}

/// `GET /sdk/mqchat.js` → the JS SDK (an ES module).
#[utoipa::path(
    get,
    tag = "web",
    path = "/sdk/mqchat.js",
    operation_id = "js_sdk",
    responses(
        (status = 200, description = "The module.", body = String, content_type = "text/javascript; charset=utf-8"),
        (status = 404, description = "`not_found`: `mqchat.js` is missing from `--web-dir`.", body = ErrorBody),
    )
)]
async fn sdk(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let body = from_dir_or(state.web.dir.as_ref(), "mqchat.js", SDK).await?;
    Ok(file("text/javascript; charset=utf-8", body))
}

/// `GET /vendor/mqtt.min.js` → MQTT.js, when `--web-vendor-dir` is set.
#[utoipa::path(
    get,
    tag = "web",
    path = "/vendor/mqtt.min.js",
    responses(
        (status = 200, description = "MQTT.js's browser bundle.", body = String, content_type = "text/javascript; charset=utf-8"),
        (status = 404, description = "`not_found`: no `--web-vendor-dir`, or no `mqtt.min.js` in it.", body = ErrorBody),
    )
)]
async fn mqtt_js(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let Some(dir) = state.web.vendor_dir.as_ref() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "MQTT.js is not configured: start chatd with --web-vendor-dir (npm install mqtt; node_modules/mqtt/dist)",
        ));
    };
    let bytes = tokio::fs::read(dir.join("mqtt.min.js"))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::NotFound,
                "mqtt.min.js not found in --web-vendor-dir",
            )
        })?;
    Ok(file("text/javascript; charset=utf-8", bytes))
}
