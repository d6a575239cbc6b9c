//! `/v1/auth`: register, login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, Json};
use super::extract::{AuthUser, ClientIp};
use super::SharedState;
use crate::domain::model::{LoginGrant, User};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(OpenApi)]
#[openapi(paths(register, login, refresh, logout))]
pub(super) struct Doc;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3-32 of `a-z 0-9 _ . -`, compared ignoring case.
    pub username: String,
    /// 8-256 characters.
    pub password: String,
}

/// `POST /v1/auth/register {username, password}` → 201 with the user.
#[utoipa::path(
    post,
    path = "/auth/register",
    request_body = Credentials,
    responses(
        (status = 201, description = "The new user.", body = User),
        (status = 400, description = "`invalid_username`, `weak_password`, `invalid_request` or `malformed_json`.", body = ErrorBody),
        (status = 409, description = "`username_taken`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many registrations from this address.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
async fn register(
    State(state): State<SharedState>,
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
#[utoipa::path(
    post,
    path = "/auth/login",
    request_body = Credentials,
    responses(
        (status = 200, description = "A new login session.", body = LoginGrant),
        (status = 401, description = "`invalid_credentials`: wrong username or password.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts for this account or from this address.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
async fn login(
    State(state): State<SharedState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<Credentials>,
) -> Result<Json<LoginGrant>, ApiError> {
    Ok(Json(
        state.chat.login(&req.username, &req.password, ip).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /v1/auth/refresh {refresh_token}` → new tokens.
///
/// The refresh token rotates; reusing an old one revokes the session.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens for the same session.", body = LoginGrant),
        (status = 401, description = "`invalid_token`: the refresh token is unknown, expired, revoked or reused.", body = ErrorBody),
    )
)]
async fn refresh(
    State(state): State<SharedState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<LoginGrant>, ApiError> {
    Ok(Json(state.chat.refresh(&req.refresh_token).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Accepted for clients that send it; the session is the bearer token's.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// End every session of the user, not only this one.
    #[serde(default)]
    pub everywhere: bool,
}

/// `POST /v1/auth/logout [{everywhere}]` → 204.
///
/// Ends the bearer token's login session: its refresh token, its access
/// tokens and its MQTT connections.
// The body is read as bytes, not through `Json`: no 415, and a 413 has
// axum's plain-text body.
#[utoipa::path(
    post,
    path = "/auth/logout",
    request_body(content = Option<LogoutRequest>, description = "Optional; empty means this session only."),
    responses(
        (status = 204, description = "Logged out."),
        (status = 400, description = "`invalid_request`: the body is not a valid `LogoutRequest`.", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB.", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
async fn logout(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    // The body is optional: an empty one means "this session".
    let req: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        super::json::from_slice(&body)?
    };
    state.chat.logout(caller, req.everywhere).await?;
    Ok(StatusCode::NO_CONTENT)
}
