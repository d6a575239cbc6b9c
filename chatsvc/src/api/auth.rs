//! `/v1/auth`: register, login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use super::error::{ApiError, Json};
use super::extract::{AuthUser, ClientIp};
use super::AppState;
use crate::domain::model::{LoginGrant, User};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// `POST /v1/auth/register {username, password}` → 201 with the user.
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<Credentials>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = state
        .chat
        .register(&req.username, &req.password, ip)
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `POST /v1/auth/login {username, password}` → tokens and the user.
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<Credentials>,
) -> Result<Json<LoginGrant>, ApiError> {
    Ok(Json(
        state.chat.login(&req.username, &req.password, ip).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /v1/auth/refresh {refresh_token}` → new tokens (the refresh token
/// rotates; reusing an old one revokes the session).
async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<LoginGrant>, ApiError> {
    Ok(Json(state.chat.refresh(&req.refresh_token).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Accepted for clients that send it; the session is the bearer token's.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// End every session of the user, not only this one.
    #[serde(default)]
    pub everywhere: bool,
}

/// `POST /v1/auth/logout [{everywhere}]` → 204. Ends the bearer token's login
/// session: its refresh token, its access tokens and its MQTT connections.
async fn logout(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    // The body is optional: an empty one means "this session".
    let req: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    state.chat.logout(caller, req.everywhere).await?;
    Ok(StatusCode::NO_CONTENT)
}
