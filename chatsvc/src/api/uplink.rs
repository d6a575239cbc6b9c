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
use mqchat_broker::{PendingReply, Uplink, UplinkRequest};
use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use super::messages::SendRequest;
use crate::domain::messages::{NewMessage, PendingSend};
use crate::domain::model::Message;
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

    /// Parses and queues a send; its answer comes once it has committed.
    async fn queue_send(
        &self,
        caller: Caller,
        req: Result<SendRequest, serde_json::Error>,
    ) -> Result<PendingSend, ApiError> {
        let req = req.map_err(|e| {
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
        Ok(self
            .chat
            .queue_send(
                caller,
                NewMessage {
                    to: req.to,
                    client_msg_id: req.client_msg_id,
                    body: req.body,
                },
            )
            .await?)
    }
}

/// `{"status", "message" | "error", "client_msg_id"}`, serialized in one
/// pass (the message's body is copied verbatim, not parsed into a tree).
#[derive(Serialize)]
struct Reply<'a> {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ReplyError<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<&'a str>,
}

#[derive(Serialize)]
struct ReplyError<'a> {
    code: &'a str,
    message: &'a str,
}

impl<'a> Reply<'a> {
    fn error(e: &'a ApiError, client_msg_id: Option<&'a str>) -> Self {
        Reply {
            status: e.status.as_u16(),
            message: None,
            error: Some(ReplyError {
                code: e.code,
                message: &e.message,
            }),
            client_msg_id,
        }
    }
}

async fn reply(queued: Result<PendingSend, ApiError>, client_msg_id: Option<String>) -> Bytes {
    let sent = match queued {
        Ok(pending) => pending.sent().await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let id = client_msg_id.as_deref();
    let json = match &sent {
        Ok(sent) => serde_json::to_vec(&Reply {
            status: if sent.created { 201 } else { 200 },
            message: Some(&sent.message),
            error: None,
            client_msg_id: id,
        }),
        Err(e) => serde_json::to_vec(&Reply::error(e, id)),
    };
    let json = json.unwrap_or_else(|e| {
        let e = ApiError::from(crate::domain::DomainError::Internal(e.to_string()));
        serde_json::to_vec(&Reply::error(&e, id)).unwrap_or_default()
    });
    Bytes::from(json)
}

impl Uplink for MqttUplink {
    #[expect(
        clippy::async_yields_async,
        reason = "two steps: taken in (queued in order), then the reply"
    )]
    fn handle(
        &self,
        request: UplinkRequest,
    ) -> Pin<Box<dyn Future<Output = PendingReply> + Send + '_>> {
        Box::pin(async move {
            let caller = Caller {
                user_id: request.principal.user_id,
                session_id: request.principal.session_id,
                service: None,
            };
            let (queued, client_msg_id) = match request.subtopic.as_str() {
                SEND => {
                    let req = serde_json::from_slice::<SendRequest>(&request.payload);
                    // The id is echoed even when the request is refused,
                    // so a 3.1.1 client can match the reply.
                    let client_msg_id = match &req {
                        Ok(r) => Some(r.client_msg_id.clone()),
                        Err(_) => serde_json::from_slice::<Value>(&request.payload)
                            .ok()
                            .and_then(|v| v.get("client_msg_id")?.as_str().map(str::to_owned)),
                    };
                    (self.queue_send(caller, req).await, client_msg_id)
                }
                other => (
                    Err(ApiError::new(
                        axum::http::StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no uplink handler for {other}"),
                    )),
                    None,
                ),
            };
            Box::pin(reply(queued, client_msg_id)) as PendingReply
        })
    }
}
