//! Friends, friend requests, blocks and presence.

use super::*;

impl Client {
    /// `GET /v1/friends`: this user's friends, with presence.
    pub async fn friends(&self) -> Result<Vec<Friend>> {
        let list: FriendList = self.call_json(Request::get("/v1/friends")).await?;
        Ok(list.friends)
    }

    /// `GET /v1/friends/online`: the friends online now.
    pub async fn online_friends(&self) -> Result<Vec<Friend>> {
        let list: FriendList = self.call_json(Request::get("/v1/friends/online")).await?;
        Ok(list.friends)
    }

    /// `DELETE /v1/friends/{user_id}`: ends a friendship; both sides get
    /// [`Event::FriendRemoved`](crate::Event::FriendRemoved). `not_found` if
    /// the two are not friends.
    pub async fn remove_friend(&self, user_id: u64) -> Result<()> {
        let request =
            Request::new(Method::DELETE, format!("/v1/friends/{user_id}"), None).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `GET /v1/friends/requests?direction=incoming`: pending requests other
    /// users sent to this one (to accept or reject), newest first.
    pub async fn incoming_friend_requests(&self) -> Result<Vec<FriendRequest>> {
        self.friend_requests("incoming").await
    }

    /// `GET /v1/friends/requests?direction=outgoing`: pending requests this
    /// user sent (to cancel), newest first.
    pub async fn outgoing_friend_requests(&self) -> Result<Vec<FriendRequest>> {
        self.friend_requests("outgoing").await
    }

    async fn friend_requests(&self, direction: &str) -> Result<Vec<FriendRequest>> {
        let request = Request::get("/v1/friends/requests").query("direction", direction.to_owned());
        let list: FriendRequestList = self.call_json(request).await?;
        Ok(list.requests)
    }

    /// `POST /v1/friends/requests`: asks `user_id` to be friends, with an
    /// optional note (at most 200 characters).
    ///
    /// Usually answers the new request, `Pending`. If `user_id` had already
    /// asked this user, the server accepts *their* request instead and
    /// answers it (`from` is `user_id`) with status `Accepted`: the two are
    /// friends now.
    ///
    /// Errors: `not_found` (no such user, or one who blocks this user),
    /// `forbidden` (this user blocks them), `conflict` (already friends, or a
    /// request already pending). Not retried once the request may have
    /// reached the server, since a repeat would answer `conflict`; see
    /// [`outgoing_friend_requests`](Self::outgoing_friend_requests) to find
    /// out.
    pub async fn send_friend_request(
        &self,
        user_id: u64,
        note: Option<&str>,
    ) -> Result<FriendRequest> {
        let request = Request::post(
            "/v1/friends/requests",
            json!({"user_id": user_id, "note": note}),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `POST /v1/friends/requests/{id}/accept` (the recipient): the two
    /// become friends. Answers the accepted request. `conflict` if the request
    /// is no longer pending.
    pub async fn accept_friend_request(&self, request_id: u64) -> Result<FriendRequest> {
        self.decide_friend_request(request_id, "accept").await
    }

    /// `POST /v1/friends/requests/{id}/reject` (the recipient). Answers the
    /// rejected request.
    pub async fn reject_friend_request(&self, request_id: u64) -> Result<FriendRequest> {
        self.decide_friend_request(request_id, "reject").await
    }

    /// `POST /v1/friends/requests/{id}/cancel` (the sender). Answers the
    /// cancelled request.
    pub async fn cancel_friend_request(&self, request_id: u64) -> Result<FriendRequest> {
        self.decide_friend_request(request_id, "cancel").await
    }

    /// A repeat of a decision answers `conflict` ("the request is accepted"),
    /// which cannot tell our own lost success from someone else's decision:
    /// so no repeat once the request may have arrived.
    async fn decide_friend_request(&self, id: u64, decision: &str) -> Result<FriendRequest> {
        let request = Request::post_empty(format!("/v1/friends/requests/{id}/{decision}"))
            .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `GET /v1/blocks`: the users this user blocks.
    pub async fn blocks(&self) -> Result<Vec<u64>> {
        let list: BlockList = self.call_json(Request::get("/v1/blocks")).await?;
        Ok(list.user_ids)
    }

    /// `POST /v1/blocks`: blocks `user_id`. They can no longer message this
    /// user, send it friend requests or see its presence, and a friendship
    /// ends. Only this user's devices are told
    /// ([`Event::BlockUpdated`](crate::Event::BlockUpdated)); the blocked user
    /// just sees `not_found` from then on.
    pub async fn block(&self, user_id: u64) -> Result<()> {
        let request = Request::post("/v1/blocks", json!({"user_id": user_id}));
        self.call(request).await.map(drop)
    }

    /// `DELETE /v1/blocks/{user_id}`. `not_found` if not blocked.
    pub async fn unblock(&self, user_id: u64) -> Result<()> {
        let request =
            Request::new(Method::DELETE, format!("/v1/blocks/{user_id}"), None).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `GET /v1/presence?users=`: the presence of those of `user_ids` who are
    /// this user's friends (and of this user); the others are left out, since
    /// presence is for friends only. Asks in batches of
    /// [`MAX_PRESENCE_BATCH`]; no request at all for an empty list.
    ///
    /// Changes arrive afterwards as [`Event::Presence`](crate::Event::Presence).
    pub async fn presence(&self, user_ids: &[u64]) -> Result<Vec<Presence>> {
        let mut out = Vec::with_capacity(user_ids.len());
        for batch in user_ids.chunks(MAX_PRESENCE_BATCH) {
            let users = batch
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let request = Request::get("/v1/presence").query("users", users);
            let list: PresenceList = self.call_json(request).await?;
            out.extend(list.presence);
        }
        Ok(out)
    }
}
