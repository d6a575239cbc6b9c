//! The browser client: the demo page at `/`, the JS SDK at `/sdk/mqchat.js`,
//! and MQTT.js at `/vendor/mqtt.min.js` from a directory the operator
//! provides (`npm install mqtt` puts it in `node_modules/mqtt/dist`). The page
//! and SDK are compiled in; `--web-dir` serves them from disk instead, for
//! working on them without rebuilding.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use super::error::{ApiError, ErrorBody};
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
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body.into(),
    )
        .into_response()
}

async fn from_dir_or(
    dir: Option<&PathBuf>,
    name: &str,
    builtin: &'static str,
) -> Result<String, ApiError> {
    match dir {
        Some(d) => tokio::fs::read_to_string(d.join(name)).await.map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{name} not found in --web-dir"),
            )
        }),
        None => Ok(builtin.to_owned()),
    }
}

/// `GET /` → the demo web client.
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
async fn index(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let body = from_dir_or(state.web.dir.as_ref(), "index.html", INDEX).await?;
    Ok(file("text/html; charset=utf-8", body))
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
            StatusCode::NOT_FOUND,
            "not_found",
            "MQTT.js is not configured: start chatd with --web-vendor-dir (npm install mqtt; node_modules/mqtt/dist)",
        ));
    };
    let bytes = tokio::fs::read(dir.join("mqtt.min.js"))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "mqtt.min.js not found in --web-vendor-dir",
            )
        })?;
    Ok(file("text/javascript; charset=utf-8", bytes))
}
