//! `SdkError`: the one error type of the SDK.

use reqwest::{Method, StatusCode};

/// Everything that can go wrong in the SDK.
///
/// Errors carry the request they belong to (`POST /v1/messages: ...`) so a log
/// line is enough to tell which call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The server answered with a non-2xx status. `code` is the stable snake_case
    /// error code from the body (`not_found`, `token_expired`, ...), or
    /// `unknown` when the body was not the documented error shape (a proxy page,
    /// for instance).
    #[error("{method} {path}: server answered {status} {code}: {message}")]
    Api {
        method: Method,
        path: String,
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The request got no complete answer: connection refused or reset, timeout.
    #[error("{method} {path}: {source}")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer whose body is not the documented shape.
    #[error("{method} {path}: unexpected response body: {source}")]
    Decode {
        method: Method,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The refresh token was rejected: the session ended on the server
    /// (expired, revoked, logged out elsewhere). Log in again.
    #[error("session expired: the refresh token was rejected, log in again")]
    SessionExpired,
    /// [`Client::logout`](crate::Client::logout) was called on this session.
    #[error("logged out")]
    LoggedOut,
    /// An argument the server would reject anyway, caught before sending.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },
    /// The MQTT connection failed or dropped.
    #[error("mqtt {broker}: {source}")]
    Mqtt {
        broker: String,
        #[source]
        source: Box<rumqttc::ConnectionError>,
    },
    /// The MQTT connection ended without an error to report.
    #[error("mqtt {broker}: connection closed")]
    MqttClosed { broker: String },
    /// The broker answered SUBACK with a failure for our own topic filter.
    #[error("mqtt {broker}: subscription to {filter} refused")]
    SubscribeRefused { broker: String, filter: String },
    /// The MQTT client's request queue is gone (its event loop ended).
    #[error("mqtt {broker}: {source}")]
    MqttClient {
        broker: String,
        #[source]
        source: Box<rumqttc::ClientError>,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client setup: {0}")]
    Setup(#[source] reqwest::Error),
    /// [`Client::connect`](crate::Client::connect) needs a Tokio runtime to run
    /// the stream's background task.
    #[error("no Tokio runtime: call connect() from within a Tokio runtime")]
    NoRuntime,
}

impl SdkError {
    /// The HTTP status, for errors that came with one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SdkError::Api { status, .. } => Some(*status),
            SdkError::Transport { source, .. } => source.status(),
            _ => None,
        }
    }

    /// The server's snake_case error code (`not_found`, `conflict`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            SdkError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// [`code`](Self::code), typed. Two answers with one status can mean
    /// different things (403 `forbidden` vs `recall_window_passed`), so match
    /// on this rather than on [`status`](Self::status).
    ///
    /// ```
    /// # fn explain(err: &mqchat_sdk::SdkError) -> &'static str {
    /// use mqchat_sdk::ErrorCode;
    /// match err.error_code() {
    ///     Some(ErrorCode::RecallWindowPassed) => "too late to recall",
    ///     Some(ErrorCode::Forbidden) => "not yours to recall",
    ///     _ => "failed",
    /// }
    /// # }
    /// ```
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code().map(ErrorCode::from_code)
    }

    /// Whether trying the same request again later can succeed: transport
    /// failures, timeouts, 5xx, 408 and 429. Everything else is an answer that
    /// will not change by asking again.
    pub fn is_transient(&self) -> bool {
        match self {
            SdkError::Api { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
            }
            SdkError::Transport { .. }
            | SdkError::Mqtt { .. }
            | SdkError::MqttClosed { .. }
            | SdkError::SubscribeRefused { .. }
            | SdkError::MqttClient { .. } => true,
            SdkError::Decode { .. }
            | SdkError::SessionExpired
            | SdkError::LoggedOut
            | SdkError::InvalidInput { .. }
            | SdkError::Setup(_)
            | SdkError::NoRuntime => false,
        }
    }

    /// Whether the request provably never reached the server's handler, so
    /// even a call that must not run twice may be sent again: the connection
    /// was never made, or a 429 refused the request unprocessed.
    pub(crate) fn never_reached_server(&self) -> bool {
        match self {
            SdkError::Transport { source, .. } => source.is_connect(),
            SdkError::Api { status, .. } => *status == StatusCode::TOO_MANY_REQUESTS,
            _ => false,
        }
    }

    /// A 401 that a fresh access token can cure (the server's documented codes
    /// for an expired or unacceptable access token).
    pub(crate) fn is_stale_token(&self) -> bool {
        matches!(
            self,
            SdkError::Api { status, code, .. }
                if *status == StatusCode::UNAUTHORIZED
                    && (code == "token_expired" || code == "invalid_token")
        )
    }
}

/// The server's error codes (`schemas/errors.md`). Codes this SDK does not
/// know yet are [`ErrorCode::Other`]; the string is in [`SdkError::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: a field is missing, has the wrong type or is out of range.
    InvalidRequest,
    /// 400: the body is not valid JSON.
    MalformedJson,
    /// 400: username is not 3–32 of `a-z 0-9 _ . -`.
    InvalidUsername,
    /// 400: password is not 8–256 characters.
    WeakPassword,
    /// 401: no bearer token.
    MissingToken,
    /// 401: a bad or revoked token (the SDK refreshes once by itself).
    InvalidToken,
    /// 401: the access token expired (the SDK refreshes by itself).
    TokenExpired,
    /// 401: wrong username or password.
    InvalidCredentials,
    /// 403: not allowed: a group role too low, a DM to a non-friend under the
    /// `friends` policy, a message to someone you block, someone else's
    /// message to edit or recall.
    Forbidden,
    /// 403: the message is older than the server's recall window.
    RecallWindowPassed,
    /// 400: a send's `reply_to` is not a message of its conversation that
    /// the sender can see.
    InvalidReply,
    /// 400: a send's `mentions` names a non-member, or too many.
    InvalidMention,
    /// 404: no such thing, or one the caller may not see (a user who blocked
    /// you looks exactly like one who does not exist).
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 409: the username exists.
    UsernameTaken,
    /// 409: the state forbids it: already friends, a request already pending
    /// or decided, the owner leaving a group with members, editing a recalled
    /// or non-text message.
    Conflict,
    /// 413: request body over 64 KiB.
    PayloadTooLarge,
    /// 415: a JSON body without the JSON content type.
    UnsupportedMediaType,
    /// 429: slow down.
    RateLimited,
    /// 503: storage is failing; retry later.
    Unavailable,
    /// 500: a server bug.
    Internal,
    /// A code this SDK does not know, or `unknown` for a body that was not
    /// the documented error shape.
    Other,
}

impl ErrorCode {
    /// Types a wire code.
    pub fn from_code(code: &str) -> ErrorCode {
        match code {
            "invalid_request" => ErrorCode::InvalidRequest,
            "malformed_json" => ErrorCode::MalformedJson,
            "invalid_username" => ErrorCode::InvalidUsername,
            "weak_password" => ErrorCode::WeakPassword,
            "missing_token" => ErrorCode::MissingToken,
            "invalid_token" => ErrorCode::InvalidToken,
            "token_expired" => ErrorCode::TokenExpired,
            "invalid_credentials" => ErrorCode::InvalidCredentials,
            "forbidden" => ErrorCode::Forbidden,
            "recall_window_passed" => ErrorCode::RecallWindowPassed,
            "invalid_reply" => ErrorCode::InvalidReply,
            "invalid_mention" => ErrorCode::InvalidMention,
            "not_found" => ErrorCode::NotFound,
            "method_not_allowed" => ErrorCode::MethodNotAllowed,
            "username_taken" => ErrorCode::UsernameTaken,
            "conflict" => ErrorCode::Conflict,
            "payload_too_large" => ErrorCode::PayloadTooLarge,
            "unsupported_media_type" => ErrorCode::UnsupportedMediaType,
            "rate_limited" => ErrorCode::RateLimited,
            "unavailable" => ErrorCode::Unavailable,
            "internal" => ErrorCode::Internal,
            _ => ErrorCode::Other,
        }
    }
}

/// The documented error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// Longest slice of an unexpected error body kept in the message; enough to
/// recognise a proxy page without filling the log with it.
const MAX_RAW_ERROR: usize = 200;

/// Builds [`SdkError::Api`] from a non-2xx answer, tolerating bodies that are
/// not the documented shape.
pub(crate) fn api_error(method: Method, path: &str, status: StatusCode, body: &[u8]) -> SdkError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => (parsed.error.code, parsed.error.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let cut = text
                .char_indices()
                .nth(MAX_RAW_ERROR)
                .map_or(text.len(), |(i, _)| i);
            ("unknown".to_owned(), text[..cut].trim().to_owned())
        }
    };
    SdkError::Api {
        method,
        path: path.to_owned(),
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_error_body() {
        let body = br#"{"error":{"code":"not_found","message":"no such user"}}"#;
        let err = api_error(Method::GET, "/v1/users/9", StatusCode::NOT_FOUND, body);
        assert_eq!(err.code(), Some("not_found"));
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
        assert!(!err.is_transient());
        assert_eq!(err.error_code(), Some(ErrorCode::NotFound));
        assert_eq!(
            err.to_string(),
            "GET /v1/users/9: server answered 404 Not Found not_found: no such user"
        );
    }

    #[test]
    fn tolerates_foreign_error_body() {
        let body = "<html>bad gateway</html>".repeat(50);
        let err = api_error(
            Method::POST,
            "/v1/messages",
            StatusCode::BAD_GATEWAY,
            body.as_bytes(),
        );
        assert_eq!(err.code(), Some("unknown"));
        assert_eq!(err.error_code(), Some(ErrorCode::Other));
        assert!(err.is_transient());
        match err {
            SdkError::Api { message, .. } => assert_eq!(message.chars().count(), MAX_RAW_ERROR),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn types_the_social_error_codes() {
        for (status, code, typed) in [
            (StatusCode::FORBIDDEN, "forbidden", ErrorCode::Forbidden),
            (
                StatusCode::FORBIDDEN,
                "recall_window_passed",
                ErrorCode::RecallWindowPassed,
            ),
            (StatusCode::CONFLICT, "conflict", ErrorCode::Conflict),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                ErrorCode::RateLimited,
            ),
            (StatusCode::IM_A_TEAPOT, "brand_new", ErrorCode::Other),
        ] {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
            let err = api_error(Method::POST, "/v1/x", status, body.as_bytes());
            assert_eq!(err.error_code(), Some(typed), "{code}");
            assert_eq!(err.code(), Some(code));
        }
        assert_eq!(SdkError::LoggedOut.error_code(), None);
    }

    #[test]
    fn classifies_statuses() {
        let api = |status: StatusCode, code: &str| SdkError::Api {
            method: Method::GET,
            path: "/v1/me".into(),
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(api(StatusCode::SERVICE_UNAVAILABLE, "unavailable").is_transient());
        assert!(api(StatusCode::TOO_MANY_REQUESTS, "rate_limited").is_transient());
        assert!(!api(StatusCode::BAD_REQUEST, "invalid").is_transient());
        assert!(api(StatusCode::UNAUTHORIZED, "token_expired").is_stale_token());
        assert!(api(StatusCode::UNAUTHORIZED, "invalid_token").is_stale_token());
        assert!(!api(StatusCode::UNAUTHORIZED, "bad_credentials").is_stale_token());
        assert!(!api(StatusCode::FORBIDDEN, "invalid_token").is_stale_token());
    }
}
