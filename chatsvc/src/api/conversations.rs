//! `/v1/conversations`: the conversation list and history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Json, Path, Query};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::model::{Conversation, Message};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list))
        .route("/conversations/{id}/messages", get(history))
        .route("/conversations/{id}/read", post(read))
        .route("/conversations/{id}/typing", post(typing))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
}

/// `GET /v1/conversations?limit=N` → the caller's conversations with their
/// last message, most recent first.
async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<ListQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let conversations = state
        .chat
        .conversations(caller, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(ConversationList { conversations }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only messages with a smaller seq (page backwards from here).
    pub before_seq: Option<u64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// More, older messages exist.
    pub has_more: bool,
}

/// `GET /v1/conversations/{id}/messages?before_seq=&limit=` → a page of
/// history, oldest first. 404 for conversations the caller is not in.
async fn history(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let (messages, has_more) = state
        .chat
        .history(caller, id, q.before_seq, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(HistoryPage { messages, has_more }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Everything up to and including this seq has been read.
    pub seq: u64,
}

#[derive(Debug, Serialize)]
pub struct ReadMarker {
    pub read_seq: u64,
}

/// `POST /v1/conversations/{id}/read {seq}` → the read marker, which never
/// moves backwards; the other party (groups: the senders) get `receipt.read`.
async fn read(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<ReadRequest>,
) -> Result<Json<ReadMarker>, ApiError> {
    Ok(Json(ReadMarker {
        read_seq: state.chat.mark_read(caller, id, req.seq).await?,
    }))
}

/// `POST /v1/conversations/{id}/typing` → 204; the other members get a
/// `typing` push on `users/{id}/typing` (not stored, not synced).
async fn typing(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.typing(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
