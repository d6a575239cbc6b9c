//! `/v1/messages`: sending.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{ApiError, Json};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::messages::NewMessage;
use crate::domain::model::{Message, Recipient};

pub fn router() -> Router<AppState> {
    Router::new().route("/messages", post(send))
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
