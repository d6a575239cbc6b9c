//! Operations endpoints: health and metrics.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// These routes in the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(healthz, metrics))]
pub(super) struct Doc;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: an answer at all means the service runs.
    pub status: &'static str,
    pub mqtt_connections: usize,
}

/// `GET /healthz` → 200 `{"status":"ok", ...}` while the service runs.
#[utoipa::path(
    get,
    tag = "ops",
    path = "/healthz",
    responses((status = 200, description = "The service runs.", body = Health))
)]
async fn healthz(State(state): State<SharedState>) -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        mqtt_connections: state.broker.connection_count(),
    })
}

/// `GET /metrics` → Prometheus text format.
#[utoipa::path(
    get,
    tag = "ops",
    path = "/metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.", body = String,
        content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
