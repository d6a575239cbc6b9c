//! `/v1/messages`: sending.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::extract::AuthUser;
use super::int64;
use super::SharedState;
use crate::domain::messages::NewMessage;
use crate::domain::model::{Message, Recipient};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/messages", post(send))
        .route("/messages/{id}", axum::routing::patch(edit).delete(hide))
        .route("/messages/{id}/recall", post(recall))
        .route("/search", get(search))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(send, edit, hide, recall, search))]
pub(super) struct Doc;

/// Body of `POST /v1/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    #[serde(deserialize_with = "int64::recipient")]
    pub to: Recipient,
    /// Chosen by the client, 1-64 characters; a resend with the same id
    /// returns the original message instead of storing a new one.
    pub client_msg_id: String,
    /// A JSON object; a text message is `{"text": "..."}`.
    #[schema(value_type = Object)]
    pub body: Box<RawValue>,
}

/// `POST /v1/messages` → 201 with the stored message, or 200 with the original.
///
/// 200 when `client_msg_id` was already used by this sender. Answered only
/// after the message is committed to disk.
#[utoipa::path(
    post,
    path = "/messages",
    operation_id = "send_message",
    request_body = SendRequest,
    responses(
        (status = 201, description = "Stored.", body = Message),
        (status = 200, description = "This sender already used this `client_msg_id`: the original, nothing stored.", body = Message),
        (status = 400, description = "`invalid_request` (e.g. a body that is not an object, too long a text, a reserved key) or `malformed_json`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the recipient is blocked by the caller, or not a friend under the `friends` policy.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such recipient or group, or one the caller may not message.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sends.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn send(
    State(state): State<SharedState>,
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The new body; it must carry `text`.
    #[schema(value_type = Object)]
    pub body: Box<RawValue>,
}

/// `PATCH /v1/messages/{id} {body}` → the edited message.
///
/// Sender only, text messages only; every member gets `message.edited`.
#[utoipa::path(
    patch,
    path = "/messages/{id}",
    operation_id = "edit_message",
    params(("id" = u64, Path, description = "The message's id.")),
    request_body = EditRequest,
    responses(
        (status = 200, description = "The edited message.", body = Message),
        (status = 400, description = "`invalid_request` (e.g. no `body.text`) or `malformed_json`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: someone else's message.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message, or one the caller can't see.", body = ErrorBody),
        (status = 409, description = "`conflict`: the message is recalled or not a text message.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn edit(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<EditRequest>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(state.chat.edit(caller, id, req.body).await?))
}

/// `POST /v1/messages/{id}/recall` → the tombstone.
///
/// Sender only, within the recall window; every member gets `message.recalled`.
#[utoipa::path(
    post,
    path = "/messages/{id}/recall",
    operation_id = "recall_message",
    params(("id" = u64, Path, description = "The message's id.")),
    responses(
        (status = 200, description = "The tombstone: `body` is `{}`, `recalled_at` is set.", body = Message),
        (status = 403, description = "`forbidden` (someone else's message) or `recall_window_passed`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message, or one the caller can't see.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn recall(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(state.chat.recall(caller, id).await?))
}

/// `DELETE /v1/messages/{id}` → 204.
///
/// Hides the message from the caller's own history and search (delete for me).
#[utoipa::path(
    delete,
    path = "/messages/{id}",
    operation_id = "hide_message",
    params(("id" = u64, Path, description = "The message's id.")),
    responses(
        (status = 204, description = "Hidden."),
        (status = 404, description = "`not_found`: no such message, or one the caller can't see.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn hide(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.hide(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words to find (at most 200 characters); the last one is a prefix.
    pub q: String,
    /// Most results (default 20, at most 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Newest first.
    pub messages: Vec<Message>,
}

/// `GET /v1/search?q=...&limit=` → matching messages, newest first.
///
/// Only the caller's own conversations, never hidden or recalled messages.
#[utoipa::path(
    get,
    path = "/search",
    operation_id = "search_messages",
    params(SearchQuery),
    responses(
        (status = 200, description = "Matching messages.", body = SearchResults),
        (status = 400, description = "`invalid_request`: `q` missing, over 200 characters, with a NUL character or without a word.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn search(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    if q.q.chars().count() > 200 {
        return Err(ApiError::bad_request("q is at most 200 characters"));
    }
    // SQLite's full-text query parser stops at a NUL ("unterminated string").
    if q.q.contains('\0') {
        return Err(ApiError::bad_request("q must not contain NUL characters"));
    }
    Ok(Json(SearchResults {
        messages: state
            .chat
            .search(caller, &q.q, q.limit.unwrap_or(20))
            .await?,
    }))
}
