//! `/v1/friends`, `/v1/blocks`, `/v1/presence`: the social graph.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Json, Path, Query};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::model::{Friend, FriendRequest, Presence};
use crate::domain::social::Decision;

pub fn router() -> Router<AppState> {
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

#[derive(Debug, Serialize)]
pub struct FriendList {
    pub friends: Vec<Friend>,
}

/// `GET /v1/friends` → friends with presence and last-seen time.
async fn list_friends(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<FriendList>, ApiError> {
    Ok(Json(FriendList {
        friends: state.chat.friends(caller).await?,
    }))
}

/// `GET /v1/friends/online` → only the friends online now.
async fn online_friends(
    State(state): State<AppState>,
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
async fn remove_friend(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(user_id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.remove_friend(caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// `incoming` (default) or `outgoing`.
    pub direction: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RequestList {
    pub requests: Vec<FriendRequest>,
}

/// `GET /v1/friends/requests?direction=incoming|outgoing` → pending requests.
async fn list_requests(
    State(state): State<AppState>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub user_id: u64,
    pub note: Option<String>,
}

/// `POST /v1/friends/requests {user_id, note?}` → 201 with the request (or
/// 200 with it accepted, when the other user had already asked).
async fn send_request(
    State(state): State<AppState>,
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
    state: AppState,
    caller: crate::domain::tokens::Caller,
    id: u64,
    d: Decision,
) -> Result<Json<FriendRequest>, ApiError> {
    Ok(Json(state.chat.decide_friend_request(caller, id, d).await?))
}

/// `POST /v1/friends/requests/{id}/accept` → the accepted request.
async fn accept(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    decide(state, caller, id, Decision::Accept).await
}

/// `POST /v1/friends/requests/{id}/reject` → the rejected request.
async fn reject(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    decide(state, caller, id, Decision::Reject).await
}

/// `POST /v1/friends/requests/{id}/cancel` → the cancelled request (sender only).
async fn cancel(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<u64>,
) -> Result<Json<FriendRequest>, ApiError> {
    decide(state, caller, id, Decision::Cancel).await
}

#[derive(Debug, Serialize)]
pub struct BlockList {
    pub user_ids: Vec<u64>,
}

/// `GET /v1/blocks` → the users the caller blocks.
async fn list_blocks(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<BlockList>, ApiError> {
    Ok(Json(BlockList {
        user_ids: state.chat.blocked(caller).await?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    pub user_id: u64,
}

/// `POST /v1/blocks {user_id}` → 204.
async fn block(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Json(req): Json<BlockRequest>,
) -> Result<StatusCode, ApiError> {
    state.chat.block(caller, req.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/blocks/{user_id}` → 204.
async fn unblock(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(user_id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.unblock(caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// Comma-separated user ids (at most 200).
    pub users: String,
}

#[derive(Debug, Serialize)]
pub struct PresenceList {
    pub presence: Vec<Presence>,
}

/// `GET /v1/presence?users=1,2,3` → presence of those who are friends (others
/// are left out).
async fn presence(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Query(q): Query<PresenceQuery>,
) -> Result<Json<PresenceList>, ApiError> {
    let ids = q
        .users
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::bad_request("users must be comma-separated ids"))?;
    if ids.len() > 200 {
        return Err(ApiError::bad_request("at most 200 users at once"));
    }
    Ok(Json(PresenceList {
        presence: state.chat.presence_of(caller, ids).await?,
    }))
}
