//! `/v1/messages`: sending.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{retry_after_header, ApiError, ErrorBody, ErrorCode, Json, Path, Query};
use super::extract::{AuthUser, AuthUserOrService};
use super::int64;
use super::SharedState;
use crate::domain::messages::{NewMessage, PendingSend, Sent};
use crate::domain::model::{Message, Recipient};
use crate::domain::replies::{Mentions, SendExtras};
use crate::domain::tokens::Caller;
use crate::domain::Chat;

/// Most sends in one `POST /v1/messages/batch`.
pub const MAX_BATCH_MESSAGES: usize = 100;

/// Largest `POST /v1/messages/batch` body: room for [`MAX_BATCH_MESSAGES`]
/// sends that would each be accepted on their own (a body is at most
/// 16 KiB).
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/messages", post(send))
        .route(
            "/messages/batch",
            post(send_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES)),
        )
        .route("/messages/{id}", axum::routing::patch(edit).delete(hide))
        .route("/messages/{id}/recall", post(recall))
        .route("/search", get(search))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(send, send_batch, edit, hide, recall, search))]
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
    /// Makes the message a reply to this one, which must be in the same
    /// conversation and visible to the sender (else `invalid_reply`).
    #[serde(default, deserialize_with = "int64::option")]
    #[schema(nullable = false)]
    pub reply_to: Option<u64>,
    /// Members to mention (up to 50 user ids), or `"all"` (in a group: its
    /// owner and admins, or every member if the group's `mention_all` is
    /// `members`). Anyone else: `invalid_mention`.
    #[serde(default)]
    #[schema(nullable = false, value_type = Object)]
    pub mentions: Option<Mentions>,
}

impl SendRequest {
    fn into_new_message(self) -> NewMessage {
        NewMessage {
            to: self.to,
            client_msg_id: self.client_msg_id,
            body: self.body,
            extras: SendExtras {
                reply_to: self.reply_to,
                mentions: self.mentions,
                ..SendExtras::default()
            },
        }
    }
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
        (status = 400, description = "`invalid_request` (e.g. a body that is not an object, too long a text, a reserved key, a file the caller can't see, an `image` whose bytes are not a PNG, JPEG, GIF or WebP image), `malformed_json` (also: a key twice in an object), `invalid_reply` (`reply_to` is not a message of this conversation the caller can see) or `invalid_mention` (`mentions` names a non-member, or more than 50).", body = ErrorBody),
        (status = 403, description = "`forbidden`: the recipient is blocked by the caller, or not a friend under the `friends` policy; `mentions: \"all\"` from a plain member of a group that keeps it to admins.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such recipient or group, or one the caller may not message.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sends.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn send(
    State(state): State<SharedState>,
    AuthUserOrService(caller): AuthUserOrService,
    Json(req): Json<SendRequest>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let sent = state.chat.send(caller, req.into_new_message()).await?;
    Ok(answer(sent))
}

/// A send's answer: 201 with the message stored, 200 with the original.
pub(super) fn answer(sent: Sent) -> (StatusCode, Json<Message>) {
    let status = if sent.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(sent.message))
}

/// Body of `POST /v1/messages/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1-100 sends, each as `POST /v1/messages` takes it, stored in this
    /// order. Each is checked on its own: one that is refused (even one
    /// that is not a valid send at all) gets its error in `results` and
    /// the others go on.
    #[schema(value_type = Vec<SendRequest>, min_items = 1, max_items = 100)]
    pub messages: Vec<Box<RawValue>>,
}

/// Answer of `POST /v1/messages/batch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One per send, in the request's order.
    pub results: Vec<SendResult>,
}

/// What became of one send: the answer `POST /v1/messages` would have
/// given it. The MQTT uplink publishes the same object as its reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendResult {
    /// 201: stored; 200: this sender already used this `client_msg_id`,
    /// `message` is the original and nothing was stored; otherwise the
    /// error's status (400, 403, 404, 429, 503...).
    pub status: u16,
    /// The stored message (201) or the original (200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// Why the send was refused (any status but 200 and 201).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SendError>,
    /// The send's `client_msg_id`, whenever it could be read (so a reply
    /// can be matched to its request even when it is refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// How long a send refused with 429 should wait.
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<Duration>,
}

/// `{"code", "message"}`, as in every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendError {
    /// Stable, snake_case (listed in `schemas/errors.md`).
    #[schema(value_type = String)]
    pub code: ErrorCode,
    /// For people; may change.
    pub message: String,
}

impl SendResult {
    fn sent(message: Message, created: bool, client_msg_id: Option<String>) -> Self {
        SendResult {
            status: if created { 201 } else { 200 },
            message: Some(message),
            error: None,
            client_msg_id,
            retry_after: None,
        }
    }

    pub(super) fn refused(e: ApiError, client_msg_id: Option<String>) -> Self {
        SendResult {
            status: e.status().as_u16(),
            message: None,
            error: Some(SendError {
                code: e.code,
                message: e.message,
            }),
            client_msg_id,
            retry_after: e.retry_after,
        }
    }
}

/// One send as the batch and the MQTT uplink take it: JSON that may not be
/// a valid send at all, answered with a [`SendResult`] rather than failing
/// the whole request.
pub(super) struct ParsedSend {
    req: Result<SendRequest, ApiError>,
    client_msg_id: Option<String>,
}

impl ParsedSend {
    /// A send on its own (the MQTT uplink): its keys are checked.
    pub(super) fn parse(json: &[u8]) -> Self {
        Self::read(json, super::json::from_slice::<SendRequest>(json))
    }

    /// A send of a batch, whose keys the batch's extractor has checked.
    fn parse_in_batch(json: &[u8]) -> Self {
        Self::read(json, super::json::already_checked::<SendRequest>(json))
    }

    fn read(json: &[u8], req: Result<SendRequest, ApiError>) -> Self {
        // The id is echoed even when the send is refused, so the caller
        // can match the answer.
        let client_msg_id = match &req {
            Ok(r) => Some(r.client_msg_id.clone()),
            Err(_) => serde_json::from_slice::<Value>(json)
                .ok()
                .and_then(|v| v.get("client_msg_id")?.as_str().map(str::to_owned)),
        };
        ParsedSend { req, client_msg_id }
    }

    /// A send refused before it was read.
    pub(super) fn refused(e: ApiError) -> Self {
        ParsedSend {
            req: Err(e),
            client_msg_id: None,
        }
    }

    /// Checks the send and queues it for the store ([`Chat::queue_send`]):
    /// sends queued one after another get their seqs in that order.
    pub(super) async fn queue(self, chat: &Chat, caller: Caller) -> QueuedSend {
        let queued = match self.req {
            Ok(req) => chat
                .queue_send(caller, req.into_new_message())
                .await
                .map_err(ApiError::from),
            Err(e) => Err(e),
        };
        QueuedSend {
            queued,
            client_msg_id: self.client_msg_id,
        }
    }
}

/// A send taken in: queued, or already refused.
pub(super) struct QueuedSend {
    queued: Result<PendingSend, ApiError>,
    client_msg_id: Option<String>,
}

impl QueuedSend {
    /// Waits for the commit.
    pub(super) async fn result(self) -> SendResult {
        let sent = match self.queued {
            Ok(pending) => pending.sent().await,
            Err(e) => return SendResult::refused(e, self.client_msg_id),
        };
        match sent {
            Ok(sent) => SendResult::sent(sent.message, sent.created, self.client_msg_id),
            Err(e) => SendResult::refused(e.into(), self.client_msg_id),
        }
    }
}

/// `POST /v1/messages/batch` → one result per send, in order.
///
/// For services that send in bulk: up to 100 sends in one request, each
/// handled exactly as `POST /v1/messages` handles it (checks, idempotency,
/// rate limit: each send counts), stored in the order given, and answered
/// once all are committed to disk. Not atomic: each send is stored or
/// refused on its own, and `results` says which. Resending the batch with
/// the same `client_msg_id`s is safe: what was stored comes back with 200.
/// When a send was refused for the rate limit the answer carries
/// `Retry-After`.
#[utoipa::path(
    post,
    path = "/messages/batch",
    operation_id = "send_messages_batch",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Each send's result, in order.", body = BatchResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait, when a send was refused with 429."))),
        (status = 400, description = "`invalid_request` (`messages` empty or longer than 100, an unknown field) or `malformed_json`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 2 MiB.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn send_batch(
    State(state): State<SharedState>,
    AuthUserOrService(caller): AuthUserOrService,
    Json(req): Json<BatchRequest>,
) -> Result<Response, ApiError> {
    if !(1..=MAX_BATCH_MESSAGES).contains(&req.messages.len()) {
        return Err(ApiError::bad_request(format!(
            "messages must hold 1-{MAX_BATCH_MESSAGES} sends, not {}",
            req.messages.len()
        )));
    }
    // All are queued before any is waited for, so they reach the store
    // back to back (usually in one commit) and in order.
    let mut queued = Vec::with_capacity(req.messages.len());
    for send in &req.messages {
        queued.push(
            ParsedSend::parse_in_batch(send.get().as_bytes())
                .queue(&state.chat, caller)
                .await,
        );
    }
    let mut results = Vec::with_capacity(queued.len());
    for send in queued {
        results.push(send.result().await);
    }
    let retry_after = results.iter().filter_map(|r| r.retry_after).max();
    let mut res = Json(BatchResponse { results }).into_response();
    if let Some(wait) = retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, retry_after_header(wait));
    }
    Ok(res)
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
/// The new body passes exactly the checks a send's body passes (reserved
/// keys, referenced files), and must carry `text`.
#[utoipa::path(
    patch,
    path = "/messages/{id}",
    operation_id = "edit_message",
    params(("id" = u64, Path, description = "The message's id.")),
    request_body = EditRequest,
    responses(
        (status = 200, description = "The edited message.", body = Message),
        (status = 400, description = "`invalid_request` (no `body.text`, or what a send may not carry: `notice`, `system`, a file the caller can't see, an `image` that is not one) or `malformed_json` (also: a key twice in an object).", body = ErrorBody),
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
