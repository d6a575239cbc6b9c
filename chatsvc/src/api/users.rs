//! `/v1/me` and `/v1/users`: profiles.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::error::{ApiError, Json, Path, Query};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::model::User;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me).patch(update_me))
        .route("/users", get(find_user))
        .route("/users/{id}", get(user))
}

/// `GET /v1/me` → the caller's profile.
async fn me(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.chat.user(caller.user_id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// New display name; `null` or empty clears it.
    pub display_name: Option<String>,
}

/// `PATCH /v1/me {display_name}` → the updated profile.
async fn update_me(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<UpdateMe>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(
        state
            .chat
            .set_display_name(caller.user_id, req.display_name)
            .await?,
    ))
}

/// `GET /v1/users/{id}` → a public profile.
async fn user(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.chat.user(id).await?))
}

#[derive(Debug, Deserialize)]
pub struct FindUser {
    pub username: String,
}

/// `GET /v1/users?username=NAME` → the profile with that username.
async fn find_user(
    State(state): State<AppState>,
    _: AuthUser,
    Query(q): Query<FindUser>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.chat.user_by_name(&q.username).await?))
}
