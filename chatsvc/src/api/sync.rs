//! `/v1/sync`: the event log and per-device acknowledgements.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Query};
use super::extract::AuthUser;
use super::int64;
use super::SharedState;
use crate::domain::model::SyncPage;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/sync", get(sync))
        .route("/sync/ack", post(ack))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(sync, ack))]
pub(super) struct Doc;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// Events with a cursor greater than this (0 = from the beginning).
    #[serde(default, deserialize_with = "int64::one")]
    pub after: u64,
    /// Page size, 1-500 (default 100).
    pub limit: Option<usize>,
}

/// `GET /v1/sync?after=CURSOR&limit=N` → `{events, cursor, has_more}`.
#[utoipa::path(
    get,
    path = "/sync",
    params(SyncQuery),
    responses((status = 200, description = "The caller's events after `after`, in cursor order.", body = SyncPage)),
    security(("bearer" = []))
)]
async fn sync(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<SyncQuery>,
) -> Result<Json<SyncPage>, ApiError> {
    Ok(Json(
        state
            .chat
            .sync(caller, q.after, q.limit.unwrap_or(100))
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Chosen by the client, 1-64 characters.
    pub device_id: String,
    /// The newest cursor the device has processed.
    #[serde(deserialize_with = "int64::one")]
    pub cursor: u64,
}

/// `POST /v1/sync/ack {device_id, cursor}` → 204.
///
/// Records what a device has processed; the stored cursor never moves
/// backwards.
#[utoipa::path(
    post,
    path = "/sync/ack",
    operation_id = "sync_ack",
    request_body = AckRequest,
    responses(
        (status = 204, description = "Recorded."),
        (status = 400, description = "`invalid_request` (e.g. an empty `device_id`, a cursor past the newest event) or `malformed_json`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn ack(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<AckRequest>,
) -> Result<StatusCode, ApiError> {
    state.chat.ack(caller, req.device_id, req.cursor).await?;
    Ok(StatusCode::NO_CONTENT)
}
