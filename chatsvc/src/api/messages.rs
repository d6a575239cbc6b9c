//! `/v1/messages`: sending.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{ApiError, Json, Path, Query};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::messages::NewMessage;
use crate::domain::model::{Message, Recipient};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/messages", post(send))
        .route("/messages/{id}", axum::routing::patch(edit).delete(hide))
        .route("/messages/{id}/recall", post(recall))
        .route("/search", get(search))
}

/// Body of `POST /v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub to: Recipient,
    /// Chosen by the client, 1-64 characters; a resend with the same id
    /// returns the original message instead of storing a new one.
    pub client_msg_id: String,
    /// A JSON object; a text message is `{"text": "..."}`.
    pub body: Box<RawValue>,
}

/// `POST /v1/messages` → 201 with the stored message, or 200 with the
/// original when `client_msg_id` was already used by this sender. Answered
/// only after the message is committed to disk.
async fn send(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<SendRequest>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let sent = state
        .chat
        .send(
            caller,
            NewMessage {
                to: req.to,
                client_msg_id: req.client_msg_id,
                body: req.body,
            },
        )
        .await?;
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sent.message)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The new body; it must carry `text`.
    pub body: Box<RawValue>,
}

/// `PATCH /v1/messages/{id} {body}` → the edited message (sender only, text
/// messages only); every member gets `message.edited`.
async fn edit(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<EditRequest>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(state.chat.edit(caller, id, req.body).await?))
}

/// `POST /v1/messages/{id}/recall` → the tombstone (sender only, within the
/// recall window); every member gets `message.recalled`.
async fn recall(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(state.chat.recall(caller, id).await?))
}

/// `DELETE /v1/messages/{id}` → 204; hides the message from the caller's own
/// history and search (delete for me).
async fn hide(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.hide(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub q: String,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct SearchResults {
    /// Newest first.
    pub messages: Vec<Message>,
}

/// `GET /v1/search?q=...&limit=` → matching messages from the caller's own
/// conversations, newest first.
async fn search(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    if q.q.chars().count() > 200 {
        return Err(ApiError::bad_request("q is at most 200 characters"));
    }
    Ok(Json(SearchResults {
        messages: state
            .chat
            .search(caller, &q.q, q.limit.unwrap_or(20))
            .await?,
    }))
}
