//! The bearer-token extractor: every authenticated route takes an `AuthUser`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::{ApiError, ErrorCode};
use super::SharedState;
use crate::domain::tokens::Caller;

/// The caller, authenticated by `Authorization: Bearer <access_token>`.
/// A service key (`mqk_...`) is refused here with 403: only the routes
/// that take [`AuthUserOrService`] are open to services.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Caller);

/// The caller by access token or by service key: the extractor of the few
/// routes a sending service needs (sending, uploading, reading users and
/// itself). Which routes those are is said by their handlers' signatures.
#[derive(Debug, Clone, Copy)]
pub struct AuthUserOrService(pub Caller);

impl FromRequestParts<SharedState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        if caller.service.is_some() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "a service key can't call this endpoint",
            ));
        }
        Ok(AuthUser(caller))
    }
}

impl FromRequestParts<SharedState> for AuthUserOrService {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state).await.map(AuthUserOrService)
    }
}

/// The bearer credential checked: an access token, or a service key (its
/// hash looked up and its rate limit taken, so a bad key is a 401 on every
/// route, open to services or not).
async fn authenticate(parts: &Parts, state: &SharedState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingToken,
            "Authorization: Bearer <token> required",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "expected a Bearer token"))?;
    if token.starts_with(crate::domain::services::KEY_PREFIX) {
        return Ok(state.chat.authenticate_key(token).await?);
    }
    Ok(state.chat.tokens().verify(token)?)
}

/// The client's address, when the server was started with connect info
/// (chatd always is; handler tests may not be). Proxies are not trusted:
/// `X-Forwarded-For` is ignored, since any client can set it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
