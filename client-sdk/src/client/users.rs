//! The user's own profile, and looking up other users.

use super::*;

impl Client {
    /// `GET /v1/me`.
    pub async fn me(&self) -> Result<User> {
        let user: User = self.call_json(Request::get("/v1/me")).await?;
        self.session().user = user.clone();
        Ok(user)
    }

    /// `PATCH /v1/me`: sets the display name (`None` sends `null`).
    pub async fn update_me(&self, display_name: Option<&str>) -> Result<User> {
        let request = Request::new(
            Method::PATCH,
            "/v1/me".to_owned(),
            Some(json!({"display_name": display_name})),
        );
        let user: User = self.call_json(request).await?;
        self.session().user = user.clone();
        Ok(user)
    }

    /// `PATCH /v1/me {group_add_policy}`: who may add this user to groups
    /// directly; anyone else's add becomes an invitation
    /// ([`group_invitations`](Self::group_invitations)).
    pub async fn set_group_add_policy(&self, policy: GroupAddPolicy) -> Result<User> {
        let request = Request::new(
            Method::PATCH,
            "/v1/me".to_owned(),
            Some(json!({ "group_add_policy": policy })),
        );
        let user: User = self.call_json(request).await?;
        self.session().user = user.clone();
        Ok(user)
    }

    /// `GET /v1/users/{id}`.
    pub async fn user(&self, id: u64) -> Result<User> {
        self.call_json(Request::get(format!("/v1/users/{id}")))
            .await
    }

    /// `GET /v1/users?username=NAME`: `None` if no such user.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let request = Request::get("/v1/users").query("username", username.to_owned());
        match self.call_json(request).await {
            Ok(user) => Ok(Some(user)),
            Err(err) if err.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
