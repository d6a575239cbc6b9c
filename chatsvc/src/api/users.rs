//! `/v1/me` and `/v1/users`: profiles.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::extract::{AuthUser, AuthUserOrService};
use super::SharedState;
use crate::domain::model::{GroupAddPolicy, User};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/me", get(me).patch(update_me))
        .route("/users", get(find_user))
        .route("/users/{id}", get(user))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(me, update_me, find_user, user))]
pub(super) struct Doc;

/// `GET /v1/me` → the caller's profile.
#[utoipa::path(
    get,
    path = "/me",
    responses((status = 200, description = "The caller.", body = User)),
    security(("bearer" = []))
)]
async fn me(
    State(state): State<SharedState>,
    AuthUserOrService(caller): AuthUserOrService,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.chat.me(caller).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// New display name, at most 64 characters, no invisible, bidi or
    /// control characters (emoji sequences are fine); `null` or empty
    /// clears it, absent keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    /// Who may add the caller to groups directly; anyone else's add
    /// becomes an invitation. Absent keeps it.
    pub group_add_policy: Option<GroupAddPolicy>,
}

/// A field that is present, even as `null` (absent stays `None`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `PATCH /v1/me {display_name?, group_add_policy?}` → the updated profile.
#[utoipa::path(
    patch,
    path = "/me",
    operation_id = "update_me",
    request_body = UpdateMe,
    responses(
        (status = 200, description = "The updated profile.", body = User),
        (status = 400, description = "`invalid_request` (a display name over 64 characters, or with an invisible, bidi or control character) or `malformed_json`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the caller's action budget is spent.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn update_me(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<UpdateMe>,
) -> Result<Json<User>, ApiError> {
    if let Some(name) = req.display_name {
        state.chat.set_display_name(caller.user_id, name).await?;
    }
    if let Some(policy) = req.group_add_policy {
        state.chat.set_group_add_policy(caller, policy).await?;
    }
    Ok(Json(state.chat.me(caller).await?))
}

/// `GET /v1/users/{id}` → a public profile.
#[utoipa::path(
    get,
    path = "/users/{id}",
    operation_id = "get_user",
    params(("id" = u64, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 404, description = "`not_found`: no such user (or one who blocks the caller).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn user(
    State(state): State<SharedState>,
    AuthUserOrService(caller): AuthUserOrService,
    Path(id): Path<u64>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.chat.profile(caller, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindUser {
    /// Matched ignoring case.
    pub username: String,
}

/// `GET /v1/users?username=NAME` → the profile with that username.
#[utoipa::path(
    get,
    path = "/users",
    params(FindUser),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 404, description = "`not_found`: no user with that name (or one who blocks the caller).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn find_user(
    State(state): State<SharedState>,
    AuthUserOrService(caller): AuthUserOrService,
    Query(q): Query<FindUser>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.chat.profile_by_name(caller, &q.username).await?))
}
