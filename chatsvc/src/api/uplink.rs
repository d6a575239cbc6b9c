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

use super::error::{ApiError, ErrorCode};
use super::messages::{ParsedSend, QueuedSend, SendResult};
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
}

/// The reply: a [`SendResult`], serialized in one pass (the message's body
/// is copied verbatim, not parsed into a tree).
async fn reply(send: QueuedSend) -> Bytes {
    let result = send.result().await;
    let json = serde_json::to_vec(&result).unwrap_or_else(|e| {
        let e = ApiError::from(crate::domain::DomainError::internal_from(
            "encoding a reply",
            e,
        ));
        serde_json::to_vec(&SendResult::refused(e, result.client_msg_id)).unwrap_or_default()
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
            let send = match request.subtopic.as_str() {
                SEND => ParsedSend::parse(&request.payload),
                other => ParsedSend::refused(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no uplink handler for {other}"),
                )),
            };
            Box::pin(reply(send.queue(&self.chat, caller).await)) as PendingReply
        })
    }
}
