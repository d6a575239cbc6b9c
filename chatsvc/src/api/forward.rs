//! `POST /v1/messages/{id}/forward`: forwarding (listed with the
//! `messages` routes).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Path};
use super::extract::AuthUser;
use super::int64;
use super::SharedState;
use crate::domain::model::{Message, Recipient};

pub fn router() -> Router<SharedState> {
    Router::new().route("/messages/{id}/forward", post(forward))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(forward))]
pub(super) struct Doc;

/// Body of `POST /v1/messages/{id}/forward`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardRequest {
    /// Where the copy goes, as in a send.
    #[serde(deserialize_with = "int64::recipient")]
    pub to: Recipient,
    /// As in a send: a resend with the same id returns the copy already made.
    pub client_msg_id: String,
}

/// `POST /v1/messages/{id}/forward {to, client_msg_id}` → 201 with the copy,
/// or 200 with the one already made.
///
/// Copies a message the caller can see (its body, files included) into a
/// conversation the caller may send to, as the caller's message, with
/// `forwarded_from`: the original's sender, conversation kind and time,
/// never its conversation or id. The copy's readers may download its files.
#[utoipa::path(
    post,
    path = "/messages/{id}/forward",
    operation_id = "forward_message",
    tag = "messages",
    params(("id" = u64, Path, description = "The message to forward.")),
    request_body = ForwardRequest,
    responses(
        (status = 201, description = "The copy, stored.", body = Message),
        (status = 200, description = "This sender already used this `client_msg_id`: the original, nothing stored.", body = Message),
        (status = 400, description = "`invalid_request` or `malformed_json`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: as for a send to `to`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such message (or one the caller can't see), or no such recipient.", body = ErrorBody),
        (status = 409, description = "`conflict`: the message is recalled, or a system message.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sends.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn forward(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<ForwardRequest>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let sent = state
        .chat
        .forward(caller, id, req.to, req.client_msg_id)
        .await?;
    Ok(super::messages::answer(sent))
}
