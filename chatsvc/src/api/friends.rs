//! `/v1/friends`, `/v1/blocks`, `/v1/presence`: the social graph.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::extract::AuthUser;
use super::int64;
use super::SharedState;
use crate::domain::model::{Friend, FriendRequest, Presence};
use crate::domain::social::Decision;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/friends", get(list_friends))
        .route("/friends/online", get(online_friends))
        .route("/friends/{user_id}", delete(remove_friend))
        .route("/friends/requests", get(list_requests).post(send_request))
        .route("/friends/requests/{id}/accept", post(accept))
        .route("/friends/requests/{id}/reject", post(reject))
        .route("/friends/requests/{id}/cancel", post(cancel))
        .route("/blocks", get(list_blocks).post(block))
        .route("/blocks/{user_id}", delete(unblock))
        .route("/presence", get(presence))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(
    list_friends,
    online_friends,
    remove_friend,
    list_requests,
    send_request,
    accept,
    reject,
    cancel,
    list_blocks,
    block,
    unblock,
    presence
))]
pub(super) struct Doc;

#[derive(Debug, Serialize, ToSchema)]
pub struct FriendList {
    pub friends: Vec<Friend>,
}

/// `GET /v1/friends` → friends with presence and last-seen time.
#[utoipa::path(
    get,
    path = "/friends",
    responses((status = 200, description = "The caller's friends.", body = FriendList)),
    security(("bearer" = []))
)]
async fn list_friends(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<FriendList>, ApiError> {
    Ok(Json(FriendList {
        friends: state.chat.friends(caller).await?,
    }))
}

/// `GET /v1/friends/online` → only the friends online now.
#[utoipa::path(
    get,
    path = "/friends/online",
    responses((status = 200, description = "The caller's friends with a live connection.", body = FriendList)),
    security(("bearer" = []))
)]
async fn online_friends(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<FriendList>, ApiError> {
    let friends = state
        .chat
        .friends(caller)
        .await?
        .into_iter()
        .filter(|f| f.online)
        .collect();
    Ok(Json(FriendList { friends }))
}

/// `DELETE /v1/friends/{user_id}` → 204; both sides get `friend.removed`.
#[utoipa::path(
    delete,
    path = "/friends/{user_id}",
    params(("user_id" = u64, Path, description = "The friend's user id.")),
    responses(
        (status = 204, description = "No longer friends."),
        (status = 404, description = "`not_found`: not a friend.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn remove_friend(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(user_id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.remove_friend(caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// `incoming` (default) or `outgoing`.
    pub direction: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<FriendRequest>,
}

/// `GET /v1/friends/requests?direction=incoming|outgoing` → pending requests.
#[utoipa::path(
    get,
    path = "/friends/requests",
    operation_id = "list_friend_requests",
    params(RequestQuery),
    responses(
        (status = 200, description = "Pending requests to (incoming) or from (outgoing) the caller.", body = RequestList),
        (status = 400, description = "`invalid_request`: `direction` is neither `incoming` nor `outgoing`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_requests(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<RequestQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let incoming = match q.direction.as_deref() {
        None | Some("incoming") => true,
        Some("outgoing") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "direction must be incoming or outgoing",
            ))
        }
    };
    Ok(Json(RequestList {
        requests: state.chat.friend_requests(caller, incoming).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    #[serde(deserialize_with = "int64::one")]
    pub user_id: u64,
    /// Shown to the other user; at most 200 characters.
    pub note: Option<String>,
}

/// `POST /v1/friends/requests {user_id, note?}` → 201 with the request.
///
/// 200 with the other user's request, accepted, when they had already asked.
#[utoipa::path(
    post,
    path = "/friends/requests",
    operation_id = "send_friend_request",
    request_body = NewRequest,
    responses(
        (status = 201, description = "The pending request.", body = FriendRequest),
        (status = 200, description = "The other user had already asked: their request, now accepted.", body = FriendRequest),
        (status = 400, description = "`invalid_request` (e.g. oneself, too long a note) or `malformed_json`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller blocks this user.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user (or one who blocks the caller).", body = ErrorBody),
        (status = 409, description = "`conflict`: already friends, or a request is already pending.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn send_request(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<NewRequest>,
) -> Result<(StatusCode, Json<FriendRequest>), ApiError> {
    let request = state
        .chat
        .request_friend(caller, req.user_id, req.note)
        .await?;
    let status = if request.status == "accepted" {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(request)))
}

async fn decide(
    state: SharedState,
    caller: crate::domain::tokens::Caller,
    id: u64,
    d: Decision,
) -> Result<Json<FriendRequest>, ApiError> {
    Ok(Json(state.chat.decide_friend_request(caller, id, d).await?))
}

/// `POST /v1/friends/requests/{id}/accept` → the accepted request.
#[utoipa::path(
    post,
    path = "/friends/requests/{id}/accept",
    operation_id = "accept_friend_request",
    params(("id" = u64, Path, description = "The request's id.")),
    responses(
        (status = 200, description = "The accepted request; both users get `friend.added`.", body = FriendRequest),
        (status = 404, description = "`not_found`: no such request, or the recipient is someone else.", body = ErrorBody),
        (status = 409, description = "`conflict`: the request is no longer pending.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn accept(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    decide(state, caller, id, Decision::Accept).await
}

/// `POST /v1/friends/requests/{id}/reject` → the rejected request.
#[utoipa::path(
    post,
    path = "/friends/requests/{id}/reject",
    operation_id = "reject_friend_request",
    params(("id" = u64, Path, description = "The request's id.")),
    responses(
        (status = 200, description = "The rejected request.", body = FriendRequest),
        (status = 404, description = "`not_found`: no such request, or the recipient is someone else.", body = ErrorBody),
        (status = 409, description = "`conflict`: the request is no longer pending.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn reject(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    decide(state, caller, id, Decision::Reject).await
}

/// `POST /v1/friends/requests/{id}/cancel` → the cancelled request (sender only).
#[utoipa::path(
    post,
    path = "/friends/requests/{id}/cancel",
    operation_id = "cancel_friend_request",
    params(("id" = u64, Path, description = "The request's id.")),
    responses(
        (status = 200, description = "The cancelled request.", body = FriendRequest),
        (status = 404, description = "`not_found`: no such request, or the sender is someone else.", body = ErrorBody),
        (status = 409, description = "`conflict`: the request is no longer pending.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn cancel(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    decide(state, caller, id, Decision::Cancel).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockList {
    pub user_ids: Vec<u64>,
}

/// `GET /v1/blocks` → the users the caller blocks.
#[utoipa::path(
    get,
    path = "/blocks",
    responses((status = 200, description = "Ids of the users the caller blocks.", body = BlockList)),
    security(("bearer" = []))
)]
async fn list_blocks(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<BlockList>, ApiError> {
    Ok(Json(BlockList {
        user_ids: state.chat.blocked(caller).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    #[serde(deserialize_with = "int64::one")]
    pub user_id: u64,
}

/// `POST /v1/blocks {user_id}` → 204.
#[utoipa::path(
    post,
    path = "/blocks",
    operation_id = "block_user",
    request_body = BlockRequest,
    responses(
        (status = 204, description = "Blocked; a friendship with the user ends."),
        (status = 400, description = "`invalid_request` (e.g. oneself) or `malformed_json`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn block(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<BlockRequest>,
) -> Result<StatusCode, ApiError> {
    state.chat.block(caller, req.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/blocks/{user_id}` → 204.
#[utoipa::path(
    delete,
    path = "/blocks/{user_id}",
    operation_id = "unblock_user",
    params(("user_id" = u64, Path, description = "The blocked user's id.")),
    responses(
        (status = 204, description = "No longer blocked."),
        (status = 404, description = "`not_found`: the caller does not block this user.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn unblock(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(user_id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.unblock(caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// Comma-separated user ids (at most 200).
    pub users: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceList {
    pub presence: Vec<Presence>,
}

/// `GET /v1/presence?users=1,2,3` → presence of those who are friends.
///
/// Others are left out: presence is for friends only.
#[utoipa::path(
    get,
    path = "/presence",
    params(PresenceQuery),
    responses(
        (status = 200, description = "Presence of the listed users who are the caller's friends.", body = PresenceList),
        (status = 400, description = "`invalid_request`: `users` is not a comma-separated list of at most 200 ids.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn presence(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<PresenceQuery>,
) -> Result<Json<PresenceList>, ApiError> {
    let ids = q
        .users
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<u64>().ok().filter(|&id| id <= int64::MAX))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::bad_request("users must be comma-separated ids"))?;
    if ids.len() > 200 {
        return Err(ApiError::bad_request("at most 200 users at once"));
    }
    Ok(Json(PresenceList {
        presence: state.chat.presence_of(caller, ids).await?,
    }))
}
