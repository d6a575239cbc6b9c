//! `/v1/conversations`: the conversation list and history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::extract::AuthUser;
use super::int64;
use super::SharedState;
use crate::domain::model::{Conversation, Message};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/conversations", get(list))
        .route("/conversations/{id}", patch(update))
        .route("/conversations/{id}/messages", get(history))
        .route("/conversations/{id}/read", post(read))
        .route("/conversations/{id}/typing", post(typing))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(list, update, history, read, typing))]
pub(super) struct Doc;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most conversations (default 100, at most 500).
    pub limit: Option<usize>,
    /// `true`: only the archived conversations (archived, and no message
    /// since); otherwise the others.
    pub archived: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
}

/// `GET /v1/conversations?limit=N&archived=BOOL` → the caller's conversations.
///
/// Those the caller pinned first, then the most recent first; archived ones
/// only with `archived=true`. Each with the peer or group, the last
/// message, the read marker, the unread count and the caller's settings.
#[utoipa::path(
    get,
    path = "/conversations",
    operation_id = "list_conversations",
    params(ListQuery),
    responses((status = 200, description = "The conversations.", body = ConversationList)),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<ListQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let conversations = state
        .chat
        .conversations(caller, q.archived.unwrap_or(false), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(ConversationList { conversations }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    /// Disappearing messages: messages sent from now on disappear this
    /// many seconds after they are sent (5 to 31,536,000, a year); `0` or
    /// `null` turns it off. Required.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, required = true, minimum = 0, maximum = 31_536_000)]
    pub message_ttl_seconds: Option<Option<u64>>,
}

/// A field that may be `null` but must be there: `Some(None)` for `null`,
/// `None` (by `#[serde(default)]`) when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationUpdated {
    pub id: u64,
    /// The TTL now in force; `null`: off.
    #[schema(required = true)]
    pub message_ttl_seconds: Option<u64>,
}

/// `PATCH /v1/conversations/{id} {message_ttl_seconds}` → the conversation's settings.
///
/// Sets disappearing messages. Either person may in a direct conversation;
/// in a group, the owner and admins. Every member gets
/// `conversation.message_ttl` (a group also a `message_ttl_changed` system
/// message). Messages sent afterwards carry `expires_at`; past it, they are
/// gone from history, search and sync, and members get `message.expired`.
#[utoipa::path(
    patch,
    path = "/conversations/{id}",
    operation_id = "update_conversation",
    params(("id" = u64, Path, description = "The conversation's id.")),
    request_body = UpdateConversation,
    responses(
        (status = 200, description = "The settings now.", body = ConversationUpdated),
        (status = 400, description = "`invalid_request`: `message_ttl_seconds` missing or out of range.", body = ErrorBody),
        (status = 403, description = "`forbidden`: a group member who is not an owner or admin.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<UpdateConversation>,
) -> Result<Json<ConversationUpdated>, ApiError> {
    let ttl = req
        .message_ttl_seconds
        .ok_or_else(|| ApiError::bad_request("message_ttl_seconds is required"))?;
    let message_ttl_seconds = state.chat.set_message_ttl(caller, id, ttl).await?;
    Ok(Json(ConversationUpdated {
        id,
        message_ttl_seconds,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only messages with a smaller seq (page backwards from here).
    #[serde(default, deserialize_with = "int64::option")]
    pub before_seq: Option<u64>,
    /// Most messages (default 50, at most 500).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// More, older messages exist.
    pub has_more: bool,
}

/// `GET /v1/conversations/{id}/messages?before_seq=&limit=` → a page of history.
///
/// Oldest first. 404 for conversations the caller is not in.
#[utoipa::path(
    get,
    path = "/conversations/{id}/messages",
    operation_id = "conversation_history",
    params(("id" = u64, Path, description = "The conversation's id."), HistoryQuery),
    responses(
        (status = 200, description = "A page of messages.", body = HistoryPage),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn history(
    State(state): State<SharedState>,
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Everything up to and including this seq has been read.
    #[serde(deserialize_with = "int64::one")]
    pub seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadMarker {
    pub read_seq: u64,
}

/// `POST /v1/conversations/{id}/read {seq}` → the read marker.
///
/// The marker never moves backwards; the other party (groups: the senders)
/// get `receipt.read`.
#[utoipa::path(
    post,
    path = "/conversations/{id}/read",
    operation_id = "mark_read",
    params(("id" = u64, Path, description = "The conversation's id.")),
    request_body = ReadRequest,
    responses(
        (status = 200, description = "The read marker now.", body = ReadMarker),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn read(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<ReadRequest>,
) -> Result<Json<ReadMarker>, ApiError> {
    Ok(Json(ReadMarker {
        read_seq: state.chat.mark_read(caller, id, req.seq).await?,
    }))
}

/// `POST /v1/conversations/{id}/typing` → 204.
///
/// The other members get a `typing` push on `users/{id}/typing` (not stored,
/// not synced).
#[utoipa::path(
    post,
    path = "/conversations/{id}/typing",
    operation_id = "send_typing",
    params(("id" = u64, Path, description = "The conversation's id.")),
    responses(
        (status = 204, description = "Pushed."),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn typing(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.typing(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
