//! Reactions (`/v1/messages/{id}/reactions/{emoji}`), pins
//! (`/v1/conversations/{id}/pins`) and the caller's own conversation
//! settings (`/v1/conversations/{id}/settings`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Path};
use super::extract::AuthUser;
use super::SharedState;
use crate::domain::pins::Pin;
use crate::domain::reactions::MessageReactions;
use crate::domain::settings::{ConversationSettings, SettingsPatch};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/messages/{id}/reactions/{emoji}",
            put(react).delete(unreact),
        )
        .route("/conversations/{id}/pins", get(pins))
        .route(
            "/conversations/{id}/pins/{message_id}",
            put(pin).delete(unpin),
        )
        .route("/conversations/{id}/settings", patch(settings))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(react, unreact, pins, pin, unpin, settings))]
pub(super) struct Doc;

#[derive(Debug, Deserialize)]
pub struct ReactionPath {
    id: u64,
    emoji: String,
}

/// `PUT /v1/messages/{id}/reactions/{emoji}` → the message's reactions.
///
/// One reaction per user per emoji: again changes nothing. The members who
/// can see the message get `reaction.added`. Counts as a send for the rate
/// limit.
#[utoipa::path(
    put,
    path = "/messages/{id}/reactions/{emoji}",
    tag = "messages",
    operation_id = "add_reaction",
    params(
        ("id" = u64, Path, description = "The message's id."),
        ("emoji" = String, Path, description = "One emoji of the Unicode list (percent-encoded), at most 64 bytes; stored fully qualified."),
    ),
    responses(
        (status = 200, description = "The message's reactions now.", body = MessageReactions),
        (status = 400, description = "`invalid_emoji`: not one emoji.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message, or one the caller can't see.", body = ErrorBody),
        (status = 409, description = "`conflict`: a recalled or system message, or the message has as many different emoji as it may.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sends.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn react(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(p): Path<ReactionPath>,
) -> Result<Json<MessageReactions>, ApiError> {
    Ok(Json(state.chat.react(caller, p.id, &p.emoji).await?))
}

/// `DELETE /v1/messages/{id}/reactions/{emoji}` → the message's reactions.
///
/// None there: nothing changes. The members who can see the message get
/// `reaction.removed`.
#[utoipa::path(
    delete,
    path = "/messages/{id}/reactions/{emoji}",
    tag = "messages",
    operation_id = "remove_reaction",
    params(
        ("id" = u64, Path, description = "The message's id."),
        ("emoji" = String, Path, description = "The emoji (percent-encoded)."),
    ),
    responses(
        (status = 200, description = "The message's reactions now.", body = MessageReactions),
        (status = 400, description = "`invalid_emoji`: not one emoji.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message, or one the caller can't see.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sends.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn unreact(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(p): Path<ReactionPath>,
) -> Result<Json<MessageReactions>, ApiError> {
    Ok(Json(state.chat.unreact(caller, p.id, &p.emoji).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PinList {
    /// Newest pin first.
    pub pins: Vec<Pin>,
}

/// `GET /v1/conversations/{id}/pins` → the pinned messages the caller can see.
#[utoipa::path(
    get,
    path = "/conversations/{id}/pins",
    tag = "conversations",
    operation_id = "list_pins",
    params(("id" = u64, Path, description = "The conversation's id.")),
    responses(
        (status = 200, description = "The pins, newest first.", body = PinList),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn pins(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<PinList>, ApiError> {
    Ok(Json(PinList {
        pins: state.chat.pins(caller, id).await?,
    }))
}

/// `PUT /v1/conversations/{id}/pins/{message_id}` → 204.
///
/// In a direct conversation either person may pin; in a group the owner
/// and admins, or every member if the group's `who_can_pin` is `members`.
/// Pinned already: nothing changes. The members who can see the message
/// get `pin.added`.
#[utoipa::path(
    put,
    path = "/conversations/{id}/pins/{message_id}",
    tag = "conversations",
    operation_id = "pin_message",
    params(
        ("id" = u64, Path, description = "The conversation's id."),
        ("message_id" = u64, Path, description = "A message of that conversation."),
    ),
    responses(
        (status = 204, description = "Pinned."),
        (status = 403, description = "`forbidden`: a plain member of a group where only admins pin.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation (or the caller is not in it), or no such message in it that the caller can see.", body = ErrorBody),
        (status = 409, description = "`conflict`: a recalled or system message, or the conversation has as many pins as it may.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many changes.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn pin(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path((id, message_id)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    state.chat.pin(caller, id, message_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/conversations/{id}/pins/{message_id}` → 204.
///
/// Who may unpin is who may pin. Not pinned: nothing changes. The members
/// who can see the message get `pin.removed`.
#[utoipa::path(
    delete,
    path = "/conversations/{id}/pins/{message_id}",
    tag = "conversations",
    operation_id = "unpin_message",
    params(
        ("id" = u64, Path, description = "The conversation's id."),
        ("message_id" = u64, Path, description = "A message of that conversation."),
    ),
    responses(
        (status = 204, description = "Not pinned (any more)."),
        (status = 403, description = "`forbidden`: a plain member of a group where only admins pin.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation (or the caller is not in it), or no such message in it that the caller can see.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many changes.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn unpin(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path((id, message_id)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    state.chat.unpin(caller, id, message_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /v1/conversations/{id}/settings {muted_until, pinned, archived}` → the settings.
///
/// The caller's own: absent fields stay as they are. `muted_until`: Unix ms,
/// `"forever"`, or null to unmute; while muted, no offline-message webhook
/// (unread still counts; a mention still notifies). `pinned`: at the top
/// of the list. `archived`: out of the list (`?archived=true` lists them)
/// until a new message arrives. The caller's devices get
/// `conversation.settings`.
#[utoipa::path(
    patch,
    path = "/conversations/{id}/settings",
    tag = "conversations",
    operation_id = "update_conversation_settings",
    params(("id" = u64, Path, description = "The conversation's id.")),
    request_body = SettingsPatch,
    responses(
        (status = 200, description = "The settings now.", body = ConversationSettings),
        (status = 400, description = "`invalid_request` (e.g. a `muted_until` that is neither a time nor `\"forever\"`) or `malformed_json`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such conversation, or the caller is not in it.", body = ErrorBody),
        (status = 409, description = "`conflict`: as many conversations pinned as may be.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many changes.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn settings(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(patch): Json<SettingsPatch>,
) -> Result<Json<ConversationSettings>, ApiError> {
    Ok(Json(state.chat.update_settings(caller, id, patch).await?))
}
