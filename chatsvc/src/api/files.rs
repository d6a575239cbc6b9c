//! `/v1/files`: attachments.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY,
    CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::extract::{AuthUser, AuthUserOrService};
use super::SharedState;
use crate::domain::files::{is_safe_image, FileInfo};

pub fn router() -> Router<SharedState> {
    Router::new()
        // The upload is streamed and limited by the domain, not buffered.
        .route("/files", post(upload).layer(DefaultBodyLimit::disable()))
        .route("/files/{id}", get(download))
}

/// These routes in the OpenAPI document (paths relative to `/v1`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(upload, download))]
pub(super) struct Doc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name, shown to recipients: 1-255 characters, no slashes,
    /// no invisible, bidi or control characters.
    pub name: Option<String>,
}

/// `POST /v1/files?name=NAME`: upload a file (the raw bytes as the body).
///
/// 201 with the file (`id`, `size`, sniffed `content_type`, `sha256`; PNG,
/// JPEG, GIF and WebP images also `width`, `height` and `thumbnail_id`,
/// unless decoding would take more than the thumbnail memory budget).
/// Reference it in a message as `{"file": {"id": ...}}`, or, if its bytes
/// are such an image, `{"image": {"id": ...}}`. Counts against the user's
/// upload quotas (per day and in total).
#[utoipa::path(
    post,
    path = "/files",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes, streamed; the type is sniffed from them."),
    responses(
        (status = 201, description = "Stored.", body = FileInfo),
        (status = 400, description = "`invalid_request`: an empty upload or a bad name.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over the upload limit; `upload_quota_exceeded`: over the caller's total upload quota.", body = ErrorBody),
        (status = 429, description = "`upload_quota_exceeded`: over the caller's daily upload quota.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until room comes back."))),
    ),
    security(("bearer" = []))
)]
async fn upload(
    State(state): State<SharedState>,
    AuthUserOrService(caller): AuthUserOrService,
    Query(q): Query<UploadQuery>,
    request: Request,
) -> Response {
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let stream = request.into_body().into_data_stream();
    match state.chat.upload(caller, q.name, stream).await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(e) => {
            let mut res = ApiError::from(e).into_response();
            // A refusal may come before the client has sent the whole body,
            // and the rest of it would be read as the next request: over
            // HTTP/1 the connection ends here, and says so, so a client
            // does not reuse it.
            if http1 {
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            res
        }
    }
}

/// `GET /v1/files/{id}`: download a file.
///
/// The bytes, for the uploader and for members who can see a message
/// referencing the file; 404 for everyone else. PNG, JPEG, GIF and WebP
/// images come inline; anything else as an attachment
/// (`Content-Disposition: attachment`). Every download carries
/// `X-Content-Type-Options: nosniff` and a `Content-Security-Policy` with
/// `sandbox`, so nothing it holds runs in the API's origin.
#[utoipa::path(
    get,
    path = "/files/{id}",
    params(("id" = String, Path, description = "The file id (32 hex characters).")),
    responses(
        (status = 200, description = "The file's bytes, with its sniffed Content-Type.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "`not_found`: no such file, or not one the caller may see.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn download(
    State(state): State<SharedState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let d = state.chat.download(caller, &id).await?;
    let file = tokio::fs::File::open(&d.path).await.map_err(|e| {
        ApiError::from(crate::domain::DomainError::internal_from(
            format!("open {}", d.path.display()),
            e,
        ))
    })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut res = body.into_response();
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&d.info.content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(d.info.size));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    // Inline only for images a browser shows without running anything;
    // everything else downloads, and if it is opened anyway (a link, a
    // new tab) it runs sandboxed in an opaque origin, never in the API's.
    let (disposition, policy) = if is_safe_image(&d.info.content_type) {
        ("inline", "default-src 'none'; img-src 'self'; sandbox")
    } else {
        ("attachment", "default-src 'none'; sandbox")
    };
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    let name: String = d
        .info
        .name
        .unwrap_or_else(|| d.info.id.clone())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._- ".contains(*c))
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\"")) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
