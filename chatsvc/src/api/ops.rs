//! Operations endpoints: health and metrics.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// `GET /healthz` → 200 `{"status":"ok", ...}` while the service runs.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({
        "status": "ok",
        "mqtt_connections": state.broker.connection_count(),
    }))
}

/// `GET /metrics` → Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("mqtt_online_users").set(state.broker.online_users().len() as f64);
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
