//! `/v1/groups`: groups and their members.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Json, Path};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::model::Group;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups", get(list).post(create))
        .route("/groups/{id}", get(show).patch(rename).delete(dissolve))
        .route("/groups/{id}/members", post(add_members))
        .route("/groups/{id}/members/{user_id}", delete(remove_member))
        .route("/groups/{id}/members/{user_id}/role", put(set_role))
        .route("/groups/{id}/leave", post(leave))
        .route("/groups/{id}/transfer", post(transfer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub members: Vec<u64>,
}

/// `POST /v1/groups {name, members}` → 201 with the group (caller is owner).
async fn create(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let group = state
        .chat
        .create_group(caller, &req.name, req.members)
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[derive(Debug, Serialize)]
pub struct GroupList {
    pub groups: Vec<Group>,
}

/// `GET /v1/groups` → the caller's groups.
async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<GroupList>, ApiError> {
    Ok(Json(GroupList {
        groups: state.chat.my_groups(caller).await?,
    }))
}

/// `GET /v1/groups/{id}` → the group with members (members only).
async fn show(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(state.chat.group(caller, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub name: String,
}

/// `PATCH /v1/groups/{id} {name}` → the renamed group (owner or admin).
async fn rename(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<Rename>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(state.chat.rename_group(caller, id, &req.name).await?))
}

/// `DELETE /v1/groups/{id}` → 204; dissolves the group (owner).
async fn dissolve(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.dissolve_group(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    pub user_ids: Vec<u64>,
}

/// `POST /v1/groups/{id}/members {user_ids}` → the group (owner or admin).
async fn add_members(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<AddMembers>,
) -> Result<Json<Group>, ApiError> {
    if req.user_ids.len() > 500 {
        return Err(ApiError::bad_request("at most 500 users at once"));
    }
    Ok(Json(
        state
            .chat
            .add_group_members(caller, id, req.user_ids)
            .await?,
    ))
}

/// `DELETE /v1/groups/{id}/members/{user_id}` → 204 (owner: anyone; admin:
/// members; anyone: themself, which is leaving).
async fn remove_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path((id, user_id)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    state.chat.remove_group_member(caller, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// `admin` or `member`.
    pub role: String,
}

/// `PUT /v1/groups/{id}/members/{user_id}/role {role}` → the group (owner).
async fn set_role(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path((id, user_id)): Path<(u64, u64)>,
    Json(req): Json<SetRole>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(
        state
            .chat
            .set_group_role(caller, id, user_id, &req.role)
            .await?,
    ))
}

/// `POST /v1/groups/{id}/leave` → 204.
async fn leave(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.leave_group(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub user_id: u64,
}

/// `POST /v1/groups/{id}/transfer {user_id}` → the group (owner).
async fn transfer(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<Transfer>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(
        state.chat.transfer_group(caller, id, req.user_id).await?,
    ))
}
