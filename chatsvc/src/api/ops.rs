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
    /// `ok`, or `degraded` when a cluster node has lost the NATS bus: it
    /// still serves its own clients and commits every send, but pushes to
    /// other nodes pause (clients heal by sync). Either way the answer is
    /// 200: an orchestrator must not restart nodes because NATS is down.
    pub status: &'static str,
    pub mqtt_connections: usize,
    /// Present on a cluster node (`--cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterHealth {
    pub node_id: String,
    /// `up` or `down`: connected to NATS.
    pub bus: &'static str,
    /// Nodes this node knows alive, itself included.
    pub nodes: usize,
}

/// `GET /healthz` → 200 `{"status":"ok", ...}` while the service runs
/// (`degraded` on a cluster node without its bus).
#[utoipa::path(
    get,
    tag = "ops",
    path = "/healthz",
    responses((status = 200, description = "The service runs.", body = Health))
)]
async fn healthz(State(state): State<SharedState>) -> axum::Json<Health> {
    let cluster = state.cluster.as_ref().map(|c| ClusterHealth {
        node_id: c.node_id().to_owned(),
        bus: if c.is_up() { "up" } else { "down" },
        nodes: c.nodes(),
    });
    let degraded = cluster.as_ref().is_some_and(|c| c.bus == "down");
    axum::Json(Health {
        status: if degraded { "degraded" } else { "ok" },
        mqtt_connections: state.broker.connection_count(),
        cluster,
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
