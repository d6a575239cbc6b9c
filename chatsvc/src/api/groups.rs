//! `/v1/groups`: groups and their members.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Path};
use super::extract::AuthUser;
use super::int64;
use super::SharedState;
use crate::domain::model::{Group, GroupInvitation};
use crate::domain::pins::PinPolicy;
use crate::domain::replies::MentionAll;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/groups", get(list).post(create))
        .route("/groups/invitations", get(list_invitations))
        .route("/groups/invitations/{id}/accept", post(accept_invitation))
        .route("/groups/invitations/{id}/decline", post(decline_invitation))
        .route("/groups/{id}", get(show).patch(rename).delete(dissolve))
        .route("/groups/{id}/members", post(add_members))
        .route("/groups/{id}/members/{user_id}", delete(remove_member))
        .route("/groups/{id}/members/{user_id}/role", put(set_role))
        .route("/groups/{id}/leave", post(leave))
        .route("/groups/{id}/transfer", post(transfer))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(
    list,
    create,
    show,
    rename,
    dissolve,
    add_members,
    remove_member,
    set_role,
    leave,
    transfer,
    list_invitations,
    accept_invitation,
    decline_invitation
))]
pub(super) struct Doc;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// 1-64 characters, no invisible, bidi or control characters.
    pub name: String,
    /// Users to add besides the caller.
    #[serde(default, deserialize_with = "int64::list")]
    pub members: Vec<u64>,
}

/// `POST /v1/groups {name, members}` → 201 with the group (caller is owner).
#[utoipa::path(
    post,
    path = "/groups",
    operation_id = "create_group",
    request_body = CreateGroup,
    responses(
        (status = 201, description = "The new group.", body = Group),
        (status = 400, description = "`invalid_request` (e.g. a bad name, too many members) or `malformed_json`.", body = ErrorBody),
        (status = 404, description = "`not_found`: a member does not exist (or blocks the caller).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let group = state
        .chat
        .create_group(caller, &req.name, req.members)
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<Group>,
}

/// `GET /v1/groups` → the caller's groups.
#[utoipa::path(
    get,
    path = "/groups",
    operation_id = "list_groups",
    responses((status = 200, description = "The groups the caller is a member of.", body = GroupList)),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<GroupList>, ApiError> {
    Ok(Json(GroupList {
        groups: state.chat.my_groups(caller).await?,
    }))
}

/// `GET /v1/groups/{id}` → the group with members (members only).
#[utoipa::path(
    get,
    path = "/groups/{id}",
    operation_id = "get_group",
    params(("id" = u64, Path, description = "The group's id.")),
    responses(
        (status = 200, description = "The group.", body = Group),
        (status = 404, description = "`not_found`: no such group, or the caller is not a member.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn show(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(state.chat.group(caller, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// 1-64 characters, no invisible, bidi or control characters.
    #[serde(default)]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// Who may pin messages: `admins` (the owner and admins, the default)
    /// or `members`.
    #[serde(default)]
    #[schema(nullable = false)]
    pub who_can_pin: Option<PinPolicy>,
    /// Who may mention `"all"`: `admins` (the default) or `members`.
    #[serde(default)]
    #[schema(nullable = false)]
    pub mention_all: Option<MentionAll>,
}

/// `PATCH /v1/groups/{id} {name, who_can_pin, mention_all}` → the group
/// (owner or admin).
///
/// Each field is optional; at least one is given.
#[utoipa::path(
    patch,
    path = "/groups/{id}",
    operation_id = "rename_group",
    params(("id" = u64, Path, description = "The group's id.")),
    request_body = Rename,
    responses(
        (status = 200, description = "The group, changed.", body = Group),
        (status = 400, description = "`invalid_request` (a bad name, or no field) or `malformed_json`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is a plain member.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group, or the caller is not a member.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn rename(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<Rename>,
) -> Result<Json<Group>, ApiError> {
    if req.name.is_none() && req.who_can_pin.is_none() && req.mention_all.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give name, who_can_pin or mention_all",
        ));
    }
    // The name first: a bad one changes nothing.
    if let Some(name) = req.name {
        state.chat.rename_group(caller, id, &name).await?;
    }
    if let Some(policy) = req.who_can_pin {
        state.chat.set_pin_policy(caller, id, policy).await?;
    }
    if let Some(policy) = req.mention_all {
        state.chat.set_mention_all(caller, id, policy).await?;
    }
    Ok(Json(state.chat.group(caller, id).await?))
}

/// `DELETE /v1/groups/{id}` → 204; dissolves the group (owner).
#[utoipa::path(
    delete,
    path = "/groups/{id}",
    operation_id = "dissolve_group",
    params(("id" = u64, Path, description = "The group's id.")),
    responses(
        (status = 204, description = "Dissolved."),
        (status = 403, description = "`forbidden`: the caller is not the owner.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group, or the caller is not a member.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn dissolve(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.dissolve_group(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    /// At most 500 at once; those already in are skipped.
    #[serde(deserialize_with = "int64::list")]
    pub user_ids: Vec<u64>,
}

/// `POST /v1/groups/{id}/members {user_ids}` → the group (owner or admin).
#[utoipa::path(
    post,
    path = "/groups/{id}/members",
    operation_id = "add_group_members",
    params(("id" = u64, Path, description = "The group's id.")),
    request_body = AddMembers,
    responses(
        (status = 200, description = "The group with its new members.", body = Group),
        (status = 400, description = "`invalid_request` (over 500 users) or `malformed_json`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is a plain member.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group (or the caller is not a member), or a user does not exist (or blocks the caller).", body = ErrorBody),
        (status = 409, description = "`conflict`: the group would exceed its size limit.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn add_members(
    State(state): State<SharedState>,
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

/// `DELETE /v1/groups/{id}/members/{user_id}` → 204.
///
/// The owner may remove anyone, admins plain members, anyone themself (which
/// is leaving).
#[utoipa::path(
    delete,
    path = "/groups/{id}/members/{user_id}",
    operation_id = "remove_group_member",
    params(("id" = u64, Path, description = "The group's id."), ("user_id" = u64, Path, description = "The member's user id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 403, description = "`forbidden`: the caller's role does not allow it.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group (or the caller is not a member), or the user is not a member.", body = ErrorBody),
        (status = 409, description = "`conflict`: the owner removing themself while others remain (transfer first).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn remove_member(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path((id, user_id)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    state.chat.remove_group_member(caller, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// `admin` or `member`.
    pub role: String,
}

/// `PUT /v1/groups/{id}/members/{user_id}/role {role}` → the group (owner).
#[utoipa::path(
    put,
    path = "/groups/{id}/members/{user_id}/role",
    operation_id = "set_group_role",
    params(("id" = u64, Path, description = "The group's id."), ("user_id" = u64, Path, description = "The member's user id.")),
    request_body = SetRole,
    responses(
        (status = 200, description = "The group.", body = Group),
        (status = 400, description = "`invalid_request` (a role other than `admin` or `member`) or `malformed_json`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is not the owner.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group (or the caller is not a member), or the user is not a member.", body = ErrorBody),
        (status = 409, description = "`conflict`: the user is the owner (use transfer).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn set_role(
    State(state): State<SharedState>,
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
#[utoipa::path(
    post,
    path = "/groups/{id}/leave",
    operation_id = "leave_group",
    params(("id" = u64, Path, description = "The group's id.")),
    responses(
        (status = 204, description = "Left."),
        (status = 404, description = "`not_found`: no such group, or the caller is not a member.", body = ErrorBody),
        (status = 409, description = "`conflict`: the owner leaving while others remain (transfer first).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn leave(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.leave_group(caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    #[serde(deserialize_with = "int64::one")]
    pub user_id: u64,
}

/// `POST /v1/groups/{id}/transfer {user_id}` → the group (owner).
#[utoipa::path(
    post,
    path = "/groups/{id}/transfer",
    operation_id = "transfer_group",
    params(("id" = u64, Path, description = "The group's id.")),
    request_body = Transfer,
    responses(
        (status = 200, description = "The group; the old owner is now an admin.", body = Group),
        (status = 403, description = "`forbidden`: the caller is not the owner.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such group (or the caller is not a member), or the user is not a member.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn transfer(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
    Json(req): Json<Transfer>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(
        state.chat.transfer_group(caller, id, req.user_id).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub invitations: Vec<GroupInvitation>,
}

/// `GET /v1/groups/invitations` → the caller's pending group invitations.
#[utoipa::path(
    get,
    path = "/groups/invitations",
    operation_id = "list_group_invitations",
    responses((status = 200, description = "Pending invitations to the caller, newest first.", body = InvitationList)),
    security(("bearer" = []))
)]
async fn list_invitations(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<InvitationList>, ApiError> {
    Ok(Json(InvitationList {
        invitations: state.chat.group_invitations(caller).await?,
    }))
}

/// `POST /v1/groups/invitations/{id}/accept` → the accepted invitation;
/// the caller is a member from now on.
#[utoipa::path(
    post,
    path = "/groups/invitations/{id}/accept",
    operation_id = "accept_group_invitation",
    params(("id" = u64, Path, description = "The invitation's id.")),
    responses(
        (status = 200, description = "Accepted: the caller joined; the members get `member_added`.", body = GroupInvitation),
        (status = 404, description = "`not_found`: no such invitation to the caller, or the group is gone.", body = ErrorBody),
        (status = 409, description = "`conflict`: no longer pending, or the group is full.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the caller's action budget is spent.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn accept_invitation(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<GroupInvitation>, ApiError> {
    Ok(Json(
        state.chat.decide_group_invitation(caller, id, true).await?,
    ))
}

/// `POST /v1/groups/invitations/{id}/decline` → the declined invitation.
#[utoipa::path(
    post,
    path = "/groups/invitations/{id}/decline",
    operation_id = "decline_group_invitation",
    params(("id" = u64, Path, description = "The invitation's id.")),
    responses(
        (status = 200, description = "Declined; the inviter gets `group.invitation`.", body = GroupInvitation),
        (status = 404, description = "`not_found`: no such invitation to the caller, or the group is gone.", body = ErrorBody),
        (status = 409, description = "`conflict`: no longer pending.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the caller's action budget is spent.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("bearer" = []))
)]
async fn decline_invitation(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<GroupInvitation>, ApiError> {
    Ok(Json(
        state
            .chat
            .decide_group_invitation(caller, id, false)
            .await?,
    ))
}
