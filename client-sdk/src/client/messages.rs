//! Messages: sending (one or a batch), history, sync and acks, edits,
//! recalls, search, read markers and typing.

use super::*;

impl Client {
    /// `POST /v1/messages` with body `{"text": text}`; see [`send`](Self::send).
    /// To write in a group, send to [`Recipient::Group`].
    pub async fn send_text(&self, to: Recipient, text: &str) -> Result<Message> {
        let mut body = Body::new();
        body.insert("text".to_owned(), Value::String(text.to_owned()));
        self.send(to, body).await
    }

    /// `POST /v1/messages`: sends a message and returns it as stored.
    ///
    /// Picks a fresh `client_msg_id` and keeps it for every retry, so a retry
    /// after a lost answer returns the original message instead of storing a
    /// second copy. To stay duplicate-free across restarts too, store your own
    /// id with the outgoing message and use [`send_with_id`](Self::send_with_id).
    pub async fn send(&self, to: Recipient, body: Body) -> Result<Message> {
        self.send_with_id(to, &new_client_msg_id(), body).await
    }

    /// `POST /v1/messages` with a caller-chosen `client_msg_id`
    /// (1..=64 characters). Sending the same id again returns the message
    /// stored the first time.
    pub async fn send_with_id(
        &self,
        to: Recipient,
        client_msg_id: &str,
        body: Body,
    ) -> Result<Message> {
        check_client_msg_id(client_msg_id)?;
        let request = Request::post(
            "/v1/messages",
            json!({"to": to, "client_msg_id": client_msg_id, "body": body}),
        );
        self.call_json(request).await
    }

    /// `POST /v1/messages/batch`: up to [`MAX_BATCH_SENDS`] sends in one
    /// request, stored in the order given; one result per send, in order.
    ///
    /// Each send is handled as [`send_with_id`](Self::send_with_id) would
    /// be and succeeds or fails on its own: `Ok` with the stored message
    /// (or the original, for a `client_msg_id` already used), or the
    /// [`SdkError::Api`] a single send would have got. A failure of the
    /// request itself (the network, a batch the server refused whole) is
    /// the outer `Err`. The request is retried like any idempotent call; a
    /// send that failed transiently ([`SdkError::is_transient`], e.g. 429)
    /// can be sent again with the same `client_msg_id` without risk of a
    /// duplicate.
    pub async fn send_batch(&self, sends: &[OutgoingMessage]) -> Result<Vec<Result<Message>>> {
        if sends.is_empty() || sends.len() > MAX_BATCH_SENDS {
            return Err(SdkError::InvalidInput {
                what: "batch",
                reason: format!("{} sends, expected 1..={MAX_BATCH_SENDS}", sends.len()),
            });
        }
        for send in sends {
            check_client_msg_id(&send.client_msg_id)?;
        }
        const PATH: &str = "/v1/messages/batch";
        let answer: BatchAnswer = self
            .call_json(Request::post(PATH, json!({ "messages": sends })))
            .await?;
        if answer.results.len() != sends.len() {
            return Err(SdkError::Decode {
                method: Method::POST,
                path: PATH.to_owned(),
                source: serde::de::Error::custom(format!(
                    "{} results for {} sends",
                    answer.results.len(),
                    sends.len()
                )),
            });
        }
        Ok(answer
            .results
            .into_iter()
            .map(|r| match (r.message, r.error) {
                (Some(message), _) if r.status < 300 => Ok(message),
                (_, error) => {
                    let error = error.unwrap_or_default();
                    Err(SdkError::Api {
                        method: Method::POST,
                        path: PATH.to_owned(),
                        status: StatusCode::from_u16(r.status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        code: error.code,
                        message: error.message,
                    })
                }
            })
            .collect())
    }

    /// `GET /v1/conversations`.
    pub async fn conversations(&self) -> Result<Vec<Conversation>> {
        let list: ConversationList = self.call_json(Request::get("/v1/conversations")).await?;
        Ok(list.conversations)
    }

    /// `PATCH /v1/conversations/{id}`: sets the conversation's
    /// disappearing-messages timer (`Some(seconds)`, 5 to 31,536,000) or
    /// turns it off (`None`); returns the timer now in force. Messages sent
    /// afterwards disappear that long after they are sent. Either person
    /// may in a direct conversation, owners and admins in a group; every
    /// member gets
    /// [`Event::ConversationMessageTtl`](crate::Event::ConversationMessageTtl).
    /// Errors: `invalid_request` (out of range), `forbidden` (a group
    /// member), `not_found`.
    pub async fn set_message_ttl(
        &self,
        conversation_id: u64,
        ttl_seconds: Option<u64>,
    ) -> Result<Option<u64>> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/conversations/{conversation_id}"),
            Some(json!({"message_ttl_seconds": ttl_seconds})),
        );
        let updated: ConversationUpdated = self.call_json(request).await?;
        Ok(updated.message_ttl_seconds)
    }

    /// `GET /v1/conversations/{id}/messages`: messages before `before_seq`
    /// (the newest ones if `None`), ascending by seq. Page backwards by passing
    /// the first message's seq as the next `before_seq`.
    pub async fn history(
        &self,
        conversation_id: u64,
        before_seq: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage> {
        let mut request = Request::get(format!("/v1/conversations/{conversation_id}/messages"));
        if let Some(before_seq) = before_seq {
            request = request.query("before_seq", before_seq.to_string());
        }
        if let Some(limit) = limit {
            request = request.query("limit", limit.to_string());
        }
        self.call_json(request).await
    }

    /// `GET /v1/sync`: inbox events after `after`, at most `limit`
    /// (the server accepts up to [`MAX_SYNC_LIMIT`]). Most apps use
    /// [`connect`](Self::connect) instead, which syncs as needed.
    pub async fn sync(&self, after: u64, limit: u32) -> Result<SyncPage> {
        let request = Request::get("/v1/sync")
            .query("after", after.to_string())
            .query("limit", limit.to_string());
        self.call_json(request).await
    }

    /// `POST /v1/sync/ack`: records that `device_id` has everything up to
    /// `cursor`.
    pub async fn ack(&self, device_id: &str, cursor: u64) -> Result<()> {
        let request = Request::post(
            "/v1/sync/ack",
            json!({"device_id": device_id, "cursor": cursor}),
        );
        self.call(request).await.map(drop)
    }

    /// `PATCH /v1/messages/{id}` with body `{"text": text}`; see
    /// [`edit`](Self::edit).
    pub async fn edit_text(&self, message_id: u64, text: &str) -> Result<Message> {
        let mut body = Body::new();
        body.insert("text".to_owned(), Value::String(text.to_owned()));
        self.edit(message_id, body).await
    }

    /// `PATCH /v1/messages/{id}`: replaces the body of one's own text message
    /// (the new body must carry `text`) and returns the message as edited.
    /// Every member gets [`Event::MessageEdited`](crate::Event::MessageEdited).
    ///
    /// Not retried once the request may have reached the server: a late
    /// repeat could overwrite a newer edit made meanwhile on another device.
    /// Errors: `forbidden` (not the sender's, or a system message),
    /// `conflict` (recalled, or not a text message).
    pub async fn edit(&self, message_id: u64, body: Body) -> Result<Message> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/messages/{message_id}"),
            Some(json!({"body": body})),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `POST /v1/messages/{id}/recall`: takes one's own message back and
    /// returns the tombstone (body `{}`, `recalled_at` set). Every member
    /// gets [`Event::MessageRecalled`](crate::Event::MessageRecalled).
    /// Recalling again answers the same tombstone, so this is retried.
    ///
    /// Errors: `forbidden` (not the sender's), `recall_window_passed` (see
    /// [`ErrorCode::RecallWindowPassed`](crate::ErrorCode::RecallWindowPassed)).
    pub async fn recall(&self, message_id: u64) -> Result<Message> {
        let request = Request::post_empty(format!("/v1/messages/{message_id}/recall"));
        self.call_json(request).await
    }

    /// `DELETE /v1/messages/{id}`: deletes a message for this user only (it
    /// leaves their history and search; others keep it). This user's devices
    /// get [`Event::MessageHidden`](crate::Event::MessageHidden).
    pub async fn delete_for_me(&self, message_id: u64) -> Result<()> {
        let request = Request::new(Method::DELETE, format!("/v1/messages/{message_id}"), None);
        self.call(request).await.map(drop)
    }

    /// `GET /v1/search?q=&limit=`: messages of this user's conversations that
    /// contain every word of `query` (the last one as a prefix), newest
    /// first. The server caps `limit` at 100 (default 20).
    pub async fn search(&self, query: &str, limit: Option<u32>) -> Result<Vec<Message>> {
        let len = query.chars().count();
        if query.trim().is_empty() || len > MAX_SEARCH_QUERY_LEN {
            return Err(SdkError::InvalidInput {
                what: "search query",
                reason: format!(
                    "{len} characters, expected 1..={MAX_SEARCH_QUERY_LEN} with a word in them"
                ),
            });
        }
        let mut request = Request::get("/v1/search").query("q", query.to_owned());
        if let Some(limit) = limit {
            request = request.query("limit", limit.to_string());
        }
        let results: SearchResults = self.call_json(request).await?;
        Ok(results.messages)
    }

    /// `POST /v1/conversations/{id}/read`: everything up to `seq` has been
    /// read. Answers the read marker, which never moves backwards (nor past
    /// the conversation's last message). Senders get
    /// [`Event::ReceiptRead`](crate::Event::ReceiptRead); this user's devices
    /// get [`Event::ConversationRead`](crate::Event::ConversationRead).
    pub async fn mark_read(&self, conversation_id: u64, seq: u64) -> Result<u64> {
        let request = Request::post(
            &format!("/v1/conversations/{conversation_id}/read"),
            json!({"seq": seq}),
        );
        let marker: ReadMarker = self.call_json(request).await?;
        Ok(marker.read_seq)
    }

    /// `POST /v1/conversations/{id}/typing`: tells the other members this
    /// user is typing ([`Event::Typing`](crate::Event::Typing); not stored).
    /// Call it every few seconds while the user types, not per keystroke.
    /// Never retried: a late indicator is worse than none.
    pub async fn typing(&self, conversation_id: u64) -> Result<()> {
        let request = Request::post_empty(format!("/v1/conversations/{conversation_id}/typing"))
            .retry(Retry::Never);
        self.call(request).await.map(drop)
    }
}
