//! Reactions, pins and this user's own conversation settings.

use super::*;
use crate::reactions::{
    ConversationSettings, MessageReactions, Pin, PinList, PinPolicy, SettingsChange,
};

/// An emoji as a path segment: percent-encoded byte by byte.
fn emoji_segment(emoji: &str) -> String {
    emoji.bytes().map(|b| format!("%{b:02X}")).collect()
}

impl Client {
    /// `PUT /v1/messages/{id}/reactions/{emoji}`: reacts with one emoji
    /// (again: no change). Counts as a send for the server's rate limit.
    /// Answers the message's reactions.
    pub async fn react(&self, message_id: u64, emoji: &str) -> Result<MessageReactions> {
        let path = format!(
            "/v1/messages/{message_id}/reactions/{}",
            emoji_segment(emoji)
        );
        self.call_json(Request::new(Method::PUT, path, None)).await
    }

    /// `DELETE /v1/messages/{id}/reactions/{emoji}`: takes a reaction back
    /// (none there: no change). Answers the message's reactions.
    pub async fn unreact(&self, message_id: u64, emoji: &str) -> Result<MessageReactions> {
        let path = format!(
            "/v1/messages/{message_id}/reactions/{}",
            emoji_segment(emoji)
        );
        self.call_json(Request::new(Method::DELETE, path, None))
            .await
    }

    /// `GET /v1/conversations/{id}/pins`: the pinned messages, newest pin
    /// first.
    pub async fn pins(&self, conversation_id: u64) -> Result<Vec<Pin>> {
        let list: PinList = self
            .call_json(Request::get(format!(
                "/v1/conversations/{conversation_id}/pins"
            )))
            .await?;
        Ok(list.pins)
    }

    /// `PUT /v1/conversations/{id}/pins/{message_id}`: pins a message (in a
    /// group: the owner and admins, or every member if the group says so).
    pub async fn pin(&self, conversation_id: u64, message_id: u64) -> Result<()> {
        let path = format!("/v1/conversations/{conversation_id}/pins/{message_id}");
        self.call(Request::new(Method::PUT, path, None))
            .await
            .map(drop)
    }

    /// `DELETE /v1/conversations/{id}/pins/{message_id}`: unpins it.
    pub async fn unpin(&self, conversation_id: u64, message_id: u64) -> Result<()> {
        let path = format!("/v1/conversations/{conversation_id}/pins/{message_id}");
        self.call(Request::new(Method::DELETE, path, None))
            .await
            .map(drop)
    }

    /// `PATCH /v1/groups/{id} {who_can_pin}` (owner or admin).
    pub async fn set_group_pin_policy(&self, group_id: u64, policy: PinPolicy) -> Result<Group> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/groups/{group_id}"),
            Some(json!({ "who_can_pin": policy })),
        );
        self.call_json(request).await
    }

    /// `PATCH /v1/conversations/{id}/settings`: changes this user's own
    /// settings of a conversation (mute, pinned to the top, archived);
    /// answers them as they are now. The user's other devices get
    /// [`Event::ConversationSettings`](crate::Event::ConversationSettings).
    pub async fn update_conversation_settings(
        &self,
        conversation_id: u64,
        change: SettingsChange,
    ) -> Result<ConversationSettings> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/conversations/{conversation_id}/settings"),
            Some(change.to_json()),
        );
        self.call_json(request).await
    }

    /// `GET /v1/conversations?archived=true`: the archived conversations
    /// ([`conversations`](Self::conversations) leaves them out).
    pub async fn archived_conversations(&self) -> Result<Vec<Conversation>> {
        let list: ConversationList = self
            .call_json(Request::get("/v1/conversations").query("archived", "true".into()))
            .await?;
        Ok(list.conversations)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn emoji_go_percent_encoded() {
        assert_eq!(super::emoji_segment("👍"), "%F0%9F%91%8D");
    }
}
