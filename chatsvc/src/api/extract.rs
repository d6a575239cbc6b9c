//! The bearer-token extractor: every authenticated route takes an `AuthUser`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::{ApiError, ErrorCode};
use super::SharedState;
use crate::domain::tokens::Caller;

/// The caller, authenticated by `Authorization: Bearer <access_token>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Caller);

impl FromRequestParts<SharedState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
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
            // Service keys reach only what a sending service needs. (Nested
            // routers see a stripped path; the original URI is the real one.)
            let path = parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map_or_else(|| parts.uri.path().to_owned(), |u| u.0.path().to_owned());
            let allowed = matches!(
                (parts.method.as_str(), path.as_str()),
                ("POST", "/v1/messages" | "/v1/messages/batch")
                    | ("GET", "/v1/me")
                    | ("POST", "/v1/files")
            ) || (parts.method == axum::http::Method::GET
                && path.starts_with("/v1/users"));
            let caller = state.chat.authenticate_key(token).await?;
            if !allowed {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "a service key can't call this endpoint",
                ));
            }
            return Ok(AuthUser(caller));
        }
        let caller = state.chat.tokens().verify(token)?;
        Ok(AuthUser(caller))
    }
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
