//! `/v1/sync`: the event log and per-device acknowledgements.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::error::{ApiError, Json, Query};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::model::SyncPage;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sync", get(sync))
        .route("/sync/ack", post(ack))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// Events with a cursor greater than this (0 = from the beginning).
    #[serde(default)]
    pub after: u64,
    /// Page size, 1-500 (default 100).
    pub limit: Option<usize>,
}

/// `GET /v1/sync?after=CURSOR&limit=N` → `{events, cursor, has_more}`.
async fn sync(
    State(state): State<AppState>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub device_id: String,
    pub cursor: u64,
}

/// `POST /v1/sync/ack {device_id, cursor}` → 204. Records what a device has
/// processed; the stored cursor never moves backwards.
async fn ack(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<AckRequest>,
) -> Result<StatusCode, ApiError> {
    state.chat.ack(caller, req.device_id, req.cursor).await?;
    Ok(StatusCode::NO_CONTENT)
}
