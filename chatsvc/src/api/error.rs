//! The one place errors become HTTP responses.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::{DomainError, ErrorChain};

/// Declares [`ErrorCode`]: each variant with its wire name and the HTTP
/// status it is answered with. One list, so the enum, its names and its
/// statuses can't disagree, and [`ErrorCode::ALL`] is complete.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal => $status:ident,)*) => {
        /// The stable, snake_case `code` of every error answer, listed in
        /// `schemas/errors.md` (a test holds the two together).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it goes on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// The status this code is answered with (but see
            /// [`ApiError::status`] for the one exception).
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    /// A field or query parameter is missing, mistyped, out of range or
    /// unknown; a body breaks a limit.
    InvalidRequest = "invalid_request" => BAD_REQUEST,
    /// Not JSON, not UTF-8, or a key twice.
    MalformedJson = "malformed_json" => BAD_REQUEST,
    InvalidUsername = "invalid_username" => BAD_REQUEST,
    /// A reaction that is not one emoji of the Unicode list.
    InvalidEmoji = "invalid_emoji" => BAD_REQUEST,
    WeakPassword = "weak_password" => BAD_REQUEST,
    MissingToken = "missing_token" => UNAUTHORIZED,
    InvalidToken = "invalid_token" => UNAUTHORIZED,
    TokenExpired = "token_expired" => UNAUTHORIZED,
    InvalidCredentials = "invalid_credentials" => UNAUTHORIZED,
    Forbidden = "forbidden" => FORBIDDEN,
    RecallWindowPassed = "recall_window_passed" => FORBIDDEN,
    /// `reply_to` names no message of the conversation the sender can see.
    InvalidReply = "invalid_reply" => BAD_REQUEST,
    /// `mentions` names someone who is not a member, or too many.
    InvalidMention = "invalid_mention" => BAD_REQUEST,
    /// Also what the caller may not see: absence and secrecy look alike.
    NotFound = "not_found" => NOT_FOUND,
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED,
    UsernameTaken = "username_taken" => CONFLICT,
    Conflict = "conflict" => CONFLICT,
    PayloadTooLarge = "payload_too_large" => PAYLOAD_TOO_LARGE,
    /// 413 for the total quota; 429 for the daily one, which passes.
    UploadQuotaExceeded = "upload_quota_exceeded" => PAYLOAD_TOO_LARGE,
    UnsupportedMediaType = "unsupported_media_type" => UNSUPPORTED_MEDIA_TYPE,
    RateLimited = "rate_limited" => TOO_MANY_REQUESTS,
    /// Storage is failing; details only in the log.
    Unavailable = "unavailable" => SERVICE_UNAVAILABLE,
    /// A bug; details only in the log.
    Internal = "internal" => INTERNAL_SERVER_ERROR,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: a stable [`ErrorCode`] and a human-readable message;
/// the status follows from them ([`ApiError::status`]).
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// The answer's status: the code's, except that an upload quota that
    /// frees up with time (the daily one, which has a `Retry-After`) is a
    /// 429 like every other "not now".
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::UploadQuotaExceeded if self.retry_after.is_some() => {
                StatusCode::TOO_MANY_REQUESTS
            }
            code => code.status(),
        }
    }

    /// A fault whose details stay in the log.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
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
    #[schema(value_type = String)]
    pub code: ErrorCode,
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
        let status = self.status();
        let mut res = (status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after_header(wait));
        }
        if status == StatusCode::UNAUTHORIZED {
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
        use ErrorCode as C;
        match e {
            DomainError::Invalid(m) => ApiError::new(C::InvalidRequest, m),
            DomainError::InvalidUsername => ApiError::new(C::InvalidUsername, e.to_string()),
            DomainError::InvalidEmoji => ApiError::new(C::InvalidEmoji, e.to_string()),
            DomainError::WeakPassword => ApiError::new(C::WeakPassword, e.to_string()),
            DomainError::UsernameTaken => ApiError::new(C::UsernameTaken, e.to_string()),
            DomainError::InvalidCredentials => {
                ApiError::new(C::InvalidCredentials, e.to_string())
            }
            DomainError::InvalidToken => ApiError::new(C::InvalidToken, e.to_string()),
            DomainError::TokenExpired => ApiError::new(C::TokenExpired, e.to_string()),
            DomainError::NotFound(what) => ApiError::new(C::NotFound, format!("{what} not found")),
            DomainError::Forbidden(m) => ApiError::new(C::Forbidden, m),
            DomainError::InvalidReply(m) => ApiError::new(C::InvalidReply, m),
            DomainError::InvalidMention(m) => ApiError::new(C::InvalidMention, m),
            DomainError::TooLarge(limit) => {
                ApiError::new(C::PayloadTooLarge, format!("larger than {limit} bytes"))
            }
            DomainError::Conflict(m) => ApiError::new(C::Conflict, m),
            DomainError::UploadQuota {
                limit,
                retry_after: None,
            } => ApiError::new(
                C::UploadQuotaExceeded,
                format!("your uploads would exceed your quota of {limit} bytes; delete some or wait for unused ones to expire"),
            ),
            DomainError::UploadQuota {
                limit,
                retry_after: Some(wait),
            } => ApiError::new(
                C::UploadQuotaExceeded,
                format!("your uploads would exceed your daily quota of {limit} bytes; retry later"),
            )
            .retry_after(wait),
            DomainError::RateLimited { retry_after } => {
                ApiError::new(C::RateLimited, "too many requests, slow down")
                    .retry_after(retry_after)
            }
            DomainError::RecallWindowPassed => {
                ApiError::new(C::RecallWindowPassed, e.to_string())
            }
            DomainError::Unavailable(ref inner) => {
                tracing::error!(error = %ErrorChain(inner), "storage unavailable");
                // A lock held elsewhere passes in seconds; a full or
                // read-only disk needs an operator. Either way clients
                // should back off, not hammer.
                ApiError::new(C::Unavailable, "storage is unavailable, retry later")
                    .retry_after(std::time::Duration::from_secs(2))
            }
            DomainError::Internal { .. } => {
                tracing::error!(error = %ErrorChain(&e), "internal error");
                ApiError::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::bad_request(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new(ErrorCode::MalformedJson, e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
            }
            // A body that could not be read (the client broke off).
            other => ApiError::bad_request(other.body_text()),
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
                ErrorCode::UnsupportedMediaType,
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
            .map_err(|r: PathRejection| ApiError::new(ErrorCode::NotFound, r.body_text()))?;
        // Ids are SQLite rowids, documented as int64: one past i64::MAX
        // names nothing (and the store could not even bind it).
        let raw = RawPathParams::from_request_parts(parts, state).await;
        if raw.is_ok_and(|raw| raw.iter().any(|(_, v)| super::int64::out_of_range(v))) {
            return Err(ApiError::new(ErrorCode::NotFound, "no such resource"));
        }
        Ok(Path(path.0))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `schemas/errors.md`'s table rows: (status, code).
    fn documented() -> Vec<(u16, String)> {
        let doc = include_str!("../../../schemas/errors.md");
        doc.lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let status = cells.next()?.parse().ok()?;
                let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((status, code.to_owned()))
            })
            .collect()
    }

    #[test]
    fn codes_match_schemas_errors_md_both_ways() {
        let rows = documented();
        let documented: BTreeSet<&str> = rows.iter().map(|(_, code)| code.as_str()).collect();
        let known: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            documented.difference(&known).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "documented in schemas/errors.md but not an ErrorCode"
        );
        assert_eq!(
            known.difference(&documented).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "an ErrorCode missing from schemas/errors.md"
        );
        // Each documented row's status is one the code is answered with.
        for (status, name) in &rows {
            let code = ErrorCode::ALL
                .iter()
                .find(|c| c.as_str() == name)
                .copied()
                .unwrap_or(ErrorCode::Internal);
            let mut error = ApiError::new(code, "");
            let mut statuses = vec![error.status().as_u16()];
            error.retry_after = Some(std::time::Duration::from_secs(1));
            statuses.push(error.status().as_u16());
            assert!(
                statuses.contains(status),
                "errors.md: {status} {name}, but the code answers {statuses:?}"
            );
        }
    }

    #[test]
    fn serde_names_are_the_wire_names() -> Result<(), serde_json::Error> {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code)?, code.as_str());
        }
        Ok(())
    }

    /// A store fault keeps its cause for the log, and the answer says
    /// nothing of it.
    #[test]
    fn internals_are_logged_never_answered() {
        let disk = std::io::Error::other("disk I/O at page 7");
        let fault = DomainError::from(crate::store::StoreError::Migration(disk.to_string()));
        assert!(
            std::error::Error::source(&fault).is_some(),
            "the store error is kept"
        );
        let logged = ErrorChain(&fault).to_string();
        assert_eq!(logged, "internal: store: migration: disk I/O at page 7");
        let e = ApiError::from(fault);
        assert_eq!(
            (e.status(), e.code),
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
        );
        assert_eq!(e.message, "internal error");

        let nested = DomainError::internal_from("open files/ab/abc", disk);
        assert_eq!(
            ErrorChain(&nested).to_string(),
            "internal: open files/ab/abc: disk I/O at page 7"
        );
        assert_eq!(ApiError::from(nested).message, "internal error");
    }
}
