//! HTTP API (axum): routing, request/response types, auth extractor, error
//! mapping. The only module that knows axum.

pub mod admin;
pub mod auth;
pub mod conversations;
pub mod error;
pub mod extract;
pub mod files;
pub mod forward;
pub mod friends;
pub mod groups;
pub mod int64;
pub mod json;
pub mod messages;
pub mod openapi;
pub mod ops;
pub mod reactions;
pub mod sync;
pub mod uplink;
pub mod users;
pub mod web;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::domain::Chat;
use error::{ApiError, ErrorCode};

/// Everything a handler may need.
pub struct AppState {
    pub chat: Chat,
    pub broker: mqchat_broker::Broker,
    pub metrics: Option<PrometheusHandle>,
    /// Bearer token of the `/admin` API (`admin.token` in the data dir).
    pub admin_token: Arc<str>,
    /// Where the web client's files come from.
    pub web: Arc<web::WebConfig>,
    /// This node's cluster membership (`--cluster`), for `/healthz`.
    pub cluster: Option<crate::cluster::Cluster>,
}

/// What the router holds and handlers extract. axum clones the state for
/// every extractor and middleware of every request; one `Arc` is one
/// atomic increment, where cloning `AppState` field by field would be a
/// dozen (its `Arc`s and channel handles) and a path copied, per extractor.
pub type SharedState = Arc<AppState>;

/// Largest accepted request body. Message bodies are limited further by the
/// domain; this bounds what is read at all.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Longest a request may run before it is answered 408 (the MQTT
/// WebSocket excepted).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole HTTP surface: `/v1` API, ops endpoints and the MQTT WebSocket.
pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    let v1 = Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(messages::router())
        .merge(forward::router())
        .merge(conversations::router())
        .merge(reactions::router())
        .merge(friends::router())
        .merge(groups::router())
        .merge(files::router())
        .merge(sync::router());
    Router::new()
        .nest("/v1", v1)
        .nest("/admin", admin::router())
        .merge(ops::router())
        .merge(openapi::router())
        .merge(web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal())
        }))
        .with_state(Arc::clone(&state))
        // The WebSocket route is the broker's; it is not timed out.
        .merge(mqchat_broker::ws::router(state.broker.clone()))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// Records every request's latency by method, route template and status.
/// Each label comes from a closed set: the route is the matched template
/// (or `unmatched`), the status is one the server chose, and the method is
/// folded by [`method_label`], so the number of series never depends on
/// what clients send.
async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!(crate::metrics::HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    res
}

/// The `method` label: the methods HTTP defines, and `other` for anything a
/// client makes up (each made-up method would otherwise be a new series).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::method_label;
    use axum::http::Method;

    #[test]
    fn made_up_methods_share_one_label() -> Result<(), axum::http::method::InvalidMethod> {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for made_up in ["XYZ", "get", "BREW", "P0ST"] {
            assert_eq!(
                method_label(&Method::from_bytes(made_up.as_bytes())?),
                "other"
            );
        }
        Ok(())
    }
}
