//! The one place errors become HTTP responses.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::DomainError;

/// An error answer: a status and a stable snake_case `code` (listed in
/// `schemas/errors.md`), with a human-readable message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up.
pub fn retry_after_header(wait: std::time::Duration) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable, snake_case, meant for programs (listed in `schemas/errors.md`).
    pub code: &'a str,
    /// For people; may change.
    pub message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after_header(wait));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        use StatusCode as S;
        match e {
            DomainError::Invalid(m) => ApiError::new(S::BAD_REQUEST, "invalid_request", m),
            DomainError::InvalidUsername => {
                ApiError::new(S::BAD_REQUEST, "invalid_username", e.to_string())
            }
            DomainError::WeakPassword => {
                ApiError::new(S::BAD_REQUEST, "weak_password", e.to_string())
            }
            DomainError::UsernameTaken => {
                ApiError::new(S::CONFLICT, "username_taken", e.to_string())
            }
            DomainError::InvalidCredentials => {
                ApiError::new(S::UNAUTHORIZED, "invalid_credentials", e.to_string())
            }
            DomainError::InvalidToken => {
                ApiError::new(S::UNAUTHORIZED, "invalid_token", e.to_string())
            }
            DomainError::TokenExpired => {
                ApiError::new(S::UNAUTHORIZED, "token_expired", e.to_string())
            }
            DomainError::NotFound(what) => {
                ApiError::new(S::NOT_FOUND, "not_found", format!("{what} not found"))
            }
            DomainError::Forbidden(m) => ApiError::new(S::FORBIDDEN, "forbidden", m),
            DomainError::TooLarge(limit) => ApiError::new(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("larger than {limit} bytes"),
            ),
            DomainError::Conflict(m) => ApiError::new(S::CONFLICT, "conflict", m),
            DomainError::UploadQuota {
                limit,
                retry_after: None,
            } => ApiError::new(
                S::PAYLOAD_TOO_LARGE,
                "upload_quota_exceeded",
                format!("your uploads would exceed your quota of {limit} bytes; delete some or wait for unused ones to expire"),
            ),
            DomainError::UploadQuota {
                limit,
                retry_after: Some(wait),
            } => {
                let mut e = ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    "upload_quota_exceeded",
                    format!("your uploads would exceed your daily quota of {limit} bytes; retry later"),
                );
                e.retry_after = Some(wait);
                e
            }
            DomainError::RateLimited { retry_after } => {
                let mut e = ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests, slow down",
                );
                e.retry_after = Some(retry_after);
                e
            }
            DomainError::RecallWindowPassed => {
                ApiError::new(S::FORBIDDEN, "recall_window_passed", e.to_string())
            }
            DomainError::Unavailable(inner) => {
                tracing::error!(error = %inner, "storage unavailable");
                let mut e = ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable, retry later",
                );
                // A lock held elsewhere passes in seconds; a full or
                // read-only disk needs an operator. Either way clients
                // should back off, not hammer.
                e.retry_after = Some(std::time::Duration::from_secs(2));
                e
            }
            DomainError::Internal(inner) => {
                tracing::error!(error = %inner, "internal error");
                ApiError::new(S::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::bad_request(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is too large",
                )
            }
            other => ApiError::new(other.status(), "invalid_request", other.body_text()),
        }
    }
}

/// `application/json` or any `application/*+json`, as `axum::Json` takes.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// `axum::Json` with our error body on rejection, refusing duplicate keys
/// ([`super::json`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        super::json::from_slice(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with our error body on rejection.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r: QueryRejection| ApiError::bad_request(r.body_text()))
    }
}

/// `axum::extract::Path` with our error body on rejection.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let path = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|r: PathRejection| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", r.body_text())
            })?;
        // Ids are SQLite rowids, documented as int64: one past i64::MAX
        // names nothing (and the store could not even bind it).
        let raw = RawPathParams::from_request_parts(parts, state).await;
        if raw.is_ok_and(|raw| raw.iter().any(|(_, v)| super::int64::out_of_range(v))) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource",
            ));
        }
        Ok(Path(path.0))
    }
}
