//! The MQTT uplink: sends published to `users/{id}/up/messages` are handled
//! exactly like `POST /v1/messages` (same validation, same idempotency, the
//! answer only after commit), and the answer is published back to the client.
//!
//! The reply is JSON: `{"status": 201, "message": {...}}` on success (200 for
//! an idempotent resend), `{"status": 4xx, "error": {"code", "message"}}`
//! otherwise, with the request's `client_msg_id` when it could be read, so a
//! 3.1.1 client can match replies to requests. MQTT 5 clients get it on their
//! Response Topic with their Correlation Data.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use mqchat_broker::{Uplink, UplinkRequest};
use serde_json::{json, Value};

use super::error::ApiError;
use super::messages::SendRequest;
use crate::domain::messages::NewMessage;
use crate::domain::tokens::Caller;
use crate::domain::Chat;

/// Subtopic for sends.
pub const SEND: &str = "up/messages";

pub struct MqttUplink {
    chat: Chat,
}

impl MqttUplink {
    pub fn new(chat: Chat) -> Self {
        MqttUplink { chat }
    }

    async fn send(&self, caller: Caller, payload: &[u8]) -> Result<(u16, Value), ApiError> {
        let req: SendRequest = serde_json::from_slice(payload).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "malformed_json",
                    e.to_string(),
                )
            } else {
                ApiError::bad_request(e.to_string())
            }
        })?;
        let sent = self
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
        let status = if sent.created { 201 } else { 200 };
        let message = serde_json::to_value(&sent.message)
            .map_err(|e| ApiError::from(crate::domain::DomainError::Internal(e.to_string())))?;
        Ok((status, message))
    }
}

impl Uplink for MqttUplink {
    fn handle(&self, request: UplinkRequest) -> Pin<Box<dyn Future<Output = Bytes> + Send + '_>> {
        Box::pin(async move {
            let caller = Caller {
                user_id: request.principal.user_id,
                session_id: request.principal.session_id,
                service: None,
            };
            let client_msg_id = serde_json::from_slice::<Value>(&request.payload)
                .ok()
                .and_then(|v| v.get("client_msg_id").cloned());
            let result = match request.subtopic.as_str() {
                SEND => self.send(caller, &request.payload).await,
                other => Err(ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no uplink handler for {other}"),
                )),
            };
            let mut reply = match result {
                Ok((status, message)) => json!({"status": status, "message": message}),
                Err(e) => {
                    json!({"status": e.status.as_u16(), "error": {"code": e.code, "message": e.message}})
                }
            };
            if let (Some(id), Some(obj)) = (client_msg_id, reply.as_object_mut()) {
                obj.insert("client_msg_id".into(), id);
            }
            Bytes::from(reply.to_string())
        })
    }
}
