//! Groups: creation, members and roles, invitations.

use super::*;

impl Client {
    /// `POST /v1/groups`: creates a group owned by this user, with `members`
    /// added (this user need not be listed). Its timeline opens with a
    /// `created` system message.
    ///
    /// Not retried once the request may have reached the server: a repeat
    /// would create a second group. After such an error, look in
    /// [`groups`](Self::groups) before trying again.
    pub async fn create_group(&self, name: &str, members: &[u64]) -> Result<Group> {
        let request = Request::post("/v1/groups", json!({"name": name, "members": members}))
            .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `GET /v1/groups`: the groups this user is a member of.
    pub async fn groups(&self) -> Result<Vec<Group>> {
        let list: GroupList = self.call_json(Request::get("/v1/groups")).await?;
        Ok(list.groups)
    }

    /// `GET /v1/groups/{id}`: one group with its members (members only;
    /// others get `not_found`).
    pub async fn group(&self, group_id: u64) -> Result<Group> {
        self.call_json(Request::get(format!("/v1/groups/{group_id}")))
            .await
    }

    /// `PATCH /v1/groups/{id}` (owner or admin): renames the group. Not
    /// retried once it may have arrived: every rename posts a system message,
    /// even to the same name.
    pub async fn rename_group(&self, group_id: u64, name: &str) -> Result<Group> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/groups/{group_id}"),
            Some(json!({"name": name})),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `DELETE /v1/groups/{id}` (owner): dissolves the group. Every member
    /// gets a `dissolved` system message, then nobody is a member.
    pub async fn dissolve_group(&self, group_id: u64) -> Result<()> {
        let request =
            Request::new(Method::DELETE, format!("/v1/groups/{group_id}"), None).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `POST /v1/groups/{id}/members` (owner or admin): adds users (those
    /// already in are skipped; at most 500 at once). New members see the
    /// timeline from their addition on. Answers the group.
    pub async fn add_group_members(&self, group_id: u64, user_ids: &[u64]) -> Result<Group> {
        let request = Request::post(
            &format!("/v1/groups/{group_id}/members"),
            json!({"user_ids": user_ids}),
        );
        self.call_json(request).await
    }

    /// `GET /v1/groups/invitations`: pending invitations to this user,
    /// newest first.
    pub async fn group_invitations(&self) -> Result<Vec<GroupInvitation>> {
        let list: InvitationList = self
            .call_json(Request::get("/v1/groups/invitations"))
            .await?;
        Ok(list.invitations)
    }

    /// `POST /v1/groups/invitations/{id}/accept`: joins the group; its
    /// timeline is visible from now on.
    pub async fn accept_group_invitation(&self, invitation_id: u64) -> Result<GroupInvitation> {
        self.answer_group_invitation(invitation_id, "accept").await
    }

    /// `POST /v1/groups/invitations/{id}/decline`.
    pub async fn decline_group_invitation(&self, invitation_id: u64) -> Result<GroupInvitation> {
        self.answer_group_invitation(invitation_id, "decline").await
    }

    async fn answer_group_invitation(
        &self,
        invitation_id: u64,
        answer: &str,
    ) -> Result<GroupInvitation> {
        let request =
            Request::post_empty(format!("/v1/groups/invitations/{invitation_id}/{answer}"));
        self.call_json(request).await
    }

    /// `DELETE /v1/groups/{id}/members/{user_id}`: the owner removes anyone,
    /// an admin removes plain members; removing oneself is
    /// [`leave_group`](Self::leave_group).
    pub async fn remove_group_member(&self, group_id: u64, user_id: u64) -> Result<()> {
        let request = Request::new(
            Method::DELETE,
            format!("/v1/groups/{group_id}/members/{user_id}"),
            None,
        )
        .done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `PUT /v1/groups/{id}/members/{user_id}/role` (owner): makes a member
    /// an [`Admin`](GroupRole::Admin) or a plain
    /// [`Member`](GroupRole::Member) again. Ownership moves only with
    /// [`transfer_group`](Self::transfer_group). Answers the group.
    pub async fn set_group_role(
        &self,
        group_id: u64,
        user_id: u64,
        role: GroupRole,
    ) -> Result<Group> {
        let role = match role {
            GroupRole::Admin => "admin",
            GroupRole::Member => "member",
            other => {
                return Err(SdkError::InvalidInput {
                    what: "group role",
                    reason: format!("{other:?}: expected Admin or Member (use transfer_group)"),
                })
            }
        };
        let request = Request::new(
            Method::PUT,
            format!("/v1/groups/{group_id}/members/{user_id}/role"),
            Some(json!({"role": role})),
        );
        self.call_json(request).await
    }

    /// `POST /v1/groups/{id}/leave`. The owner must
    /// [`transfer_group`](Self::transfer_group) first (`conflict`), unless it
    /// is the last member: then the group is dissolved.
    pub async fn leave_group(&self, group_id: u64) -> Result<()> {
        let request = Request::post_empty(format!("/v1/groups/{group_id}/leave")).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `POST /v1/groups/{id}/transfer` (owner): makes member `user_id` the
    /// owner; this user becomes an admin. Answers the group. Not retried once
    /// it may have arrived: a repeat by the former owner answers `forbidden`.
    pub async fn transfer_group(&self, group_id: u64, user_id: u64) -> Result<Group> {
        let request = Request::post(
            &format!("/v1/groups/{group_id}/transfer"),
            json!({"user_id": user_id}),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
    }
}
