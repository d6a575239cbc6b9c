//! Replies, mentions and forwards.

use super::*;
use crate::model::MentionAll;

impl Client {
    /// `POST /v1/messages` with everything an [`OutgoingMessage`] carries:
    /// a reply (`reply_to`) and mentions besides the body. Retried under
    /// its `client_msg_id`, so a retry returns the message stored the
    /// first time.
    ///
    /// Errors: [`ErrorCode::InvalidReply`](crate::ErrorCode::InvalidReply)
    /// (not a message of this conversation the caller can see),
    /// [`ErrorCode::InvalidMention`](crate::ErrorCode::InvalidMention) (a
    /// non-member), `forbidden` (`"all"` from a plain member of a group that
    /// keeps it to admins).
    pub async fn send_message(&self, message: &OutgoingMessage) -> Result<Message> {
        check_client_msg_id(&message.client_msg_id)?;
        let body = serde_json::to_value(message).map_err(|e| SdkError::InvalidInput {
            what: "message",
            reason: e.to_string(),
        })?;
        self.call_json(Request::post("/v1/messages", body)).await
    }

    /// `POST /v1/messages/{id}/forward`: copies a message this user can see
    /// (files included) into `to`, as this user's message with
    /// `forwarded_from`. Picks a fresh `client_msg_id` and keeps it for
    /// every retry; see [`forward_with_id`](Self::forward_with_id).
    pub async fn forward(&self, message_id: u64, to: Recipient) -> Result<Message> {
        self.forward_with_id(message_id, to, &new_client_msg_id())
            .await
    }

    /// [`forward`](Self::forward) with a caller-chosen `client_msg_id`:
    /// forwarding again with the same id returns the copy made the first time.
    pub async fn forward_with_id(
        &self,
        message_id: u64,
        to: Recipient,
        client_msg_id: &str,
    ) -> Result<Message> {
        check_client_msg_id(client_msg_id)?;
        let request = Request::post(
            &format!("/v1/messages/{message_id}/forward"),
            json!({"to": to, "client_msg_id": client_msg_id}),
        );
        self.call_json(request).await
    }

    /// `PATCH /v1/groups/{id} {mention_all}` (owner or admin): who may
    /// mention `"all"` in the group. Setting the value it has changes
    /// nothing, so this is retried.
    pub async fn set_group_mention_all(
        &self,
        group_id: u64,
        mention_all: MentionAll,
    ) -> Result<Group> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/groups/{group_id}"),
            Some(json!({ "mention_all": mention_all })),
        );
        self.call_json(request).await
    }
}
