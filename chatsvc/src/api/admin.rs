//! `/admin`: operations for the platform's operator, guarded by the admin
//! token (`admin.token` in the data dir, mode 0600) as a bearer token.

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode, Json, Path};
use super::int64;
use super::SharedState;
use crate::domain::model::User;
use crate::domain::services::Service;
use crate::domain::webhooks::Webhook;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/online", get(online))
        .route("/users", post(create_user))
        .route("/users/{id}/password", post(reset_password))
        .route("/users/{id}/disconnect", post(disconnect))
        .route("/files/cleanup", post(clean_files))
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route("/webhooks/{id}", axum::routing::delete(delete_webhook))
        .route("/webhooks/{id}/replay", post(replay_webhook))
        .route("/services", get(list_services).post(create_service))
        .route("/services/{key_id}/revoke", post(revoke_service_key))
}

/// These routes in the OpenAPI document (paths relative to `/admin`).
#[derive(OpenApi)]
#[openapi(paths(
    create_service,
    list_services,
    revoke_service_key,
    online,
    create_user,
    reset_password,
    disconnect,
    clean_files,
    list_webhooks,
    create_webhook,
    delete_webhook,
    replay_webhook
))]
pub(super) struct Doc;

/// Proof that the caller holds the admin token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<SharedState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::new(ErrorCode::MissingToken, "admin token required"))?;
        if bool::from(
            presented
                .trim()
                .as_bytes()
                .ct_eq(state.admin_token.as_bytes()),
        ) {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                ErrorCode::InvalidToken,
                "invalid admin token",
            ))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Online {
    pub user_ids: Vec<u64>,
    pub connections: usize,
}

/// `GET /admin/online` → users with a live MQTT connection.
#[utoipa::path(
    get,
    path = "/online",
    operation_id = "admin_online",
    responses((status = 200, description = "Online users and the number of MQTT connections.", body = Online)),
    security(("admin_token" = []))
)]
async fn online(State(state): State<SharedState>, _: Admin) -> Json<Online> {
    Json(Online {
        user_ids: state.broker.online_users(),
        connections: state.broker.connection_count(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
}

/// `POST /admin/users {username, password}` → 201 with the user.
#[utoipa::path(
    post,
    path = "/users",
    operation_id = "admin_create_user",
    request_body = NewUser,
    responses(
        (status = 201, description = "The new user.", body = User),
        (status = 400, description = "`invalid_username`, `weak_password`, `invalid_request` or `malformed_json`.", body = ErrorBody),
        (status = 409, description = "`username_taken`.", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn create_user(
    State(state): State<SharedState>,
    _: Admin,
    Json(req): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .chat
                .register(&req.username, &req.password, None)
                .await?,
        ),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

/// `POST /admin/users/{id}/password {password}` → 204.
///
/// Every session of the user ends (refresh tokens, access tokens, MQTT
/// connections).
#[utoipa::path(
    post,
    path = "/users/{id}/password",
    operation_id = "admin_reset_password",
    params(("id" = u64, Path, description = "The user's id.")),
    request_body = NewPassword,
    responses(
        (status = 204, description = "Password set, sessions ended."),
        (status = 400, description = "`weak_password`, `invalid_request` or `malformed_json`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user.", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn reset_password(
    State(state): State<SharedState>,
    _: Admin,
    Path(id): Path<u64>,
    Json(req): Json<NewPassword>,
) -> Result<StatusCode, ApiError> {
    state.chat.reset_password(id, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Disconnected {
    pub connections: usize,
}

/// `POST /admin/users/{id}/disconnect` → how many MQTT connections were
/// closed on this node (on a cluster, the other nodes close theirs too).
#[utoipa::path(
    post,
    path = "/users/{id}/disconnect",
    operation_id = "admin_disconnect_user",
    params(("id" = u64, Path, description = "The user's id.")),
    responses((status = 200, description = "Connections closed (0 for a user who is offline or does not exist).", body = Disconnected)),
    security(("admin_token" = []))
)]
async fn disconnect(
    State(state): State<SharedState>,
    _: Admin,
    Path(id): Path<u64>,
) -> Json<Disconnected> {
    Json(Disconnected {
        connections: state.chat.disconnect_user(id),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    /// Event types (`message.created`, `user.offline_message`); all if empty.
    #[serde(default)]
    pub events: Vec<String>,
}

/// `POST /admin/webhooks {url, events}` → 201 with the webhook and its secret.
///
/// The signing secret is shown only now.
#[utoipa::path(
    post,
    path = "/webhooks",
    operation_id = "admin_create_webhook",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "The webhook, with its `secret`.", body = Webhook),
        (status = 400, description = "`invalid_request` (not an http(s) URL, an unknown event) or `malformed_json`.", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn create_webhook(
    State(state): State<SharedState>,
    _: Admin,
    Json(req): Json<NewWebhook>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.chat.create_webhook(&req.url, req.events).await?),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// `GET /admin/webhooks` → active webhooks (without secrets).
#[utoipa::path(
    get,
    path = "/webhooks",
    operation_id = "admin_list_webhooks",
    responses((status = 200, description = "Active webhooks, without `secret`.", body = WebhookList)),
    security(("admin_token" = []))
)]
async fn list_webhooks(
    State(state): State<SharedState>,
    _: Admin,
) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(WebhookList {
        webhooks: state.chat.webhooks().await?,
    }))
}

/// `DELETE /admin/webhooks/{id}` → 204; stops deliveries to it.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    operation_id = "admin_delete_webhook",
    params(("id" = u64, Path, description = "The webhook's id.")),
    responses(
        (status = 204, description = "Stopped."),
        (status = 404, description = "`not_found`: no such active webhook.", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn delete_webhook(
    State(state): State<SharedState>,
    _: Admin,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.delete_webhook(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Re-send deliveries with an id greater than this.
    #[serde(default, deserialize_with = "int64::one")]
    pub after: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub requeued: usize,
}

/// `POST /admin/webhooks/{id}/replay {after}` → how many deliveries were queued again.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/replay",
    operation_id = "admin_replay_webhook",
    params(("id" = u64, Path, description = "The webhook's id.")),
    request_body = Replay,
    responses((status = 200, description = "Deliveries queued again.", body = Replayed)),
    security(("admin_token" = []))
)]
async fn replay_webhook(
    State(state): State<SharedState>,
    _: Admin,
    Path(id): Path<u64>,
    Json(req): Json<Replay>,
) -> Result<Json<Replayed>, ApiError> {
    Ok(Json(Replayed {
        requeued: state.chat.replay_webhook(id, req.after).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    /// Delete unreferenced uploads older than this many seconds.
    pub older_than_secs: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cleaned {
    pub deleted: usize,
}

/// `POST /admin/files/cleanup {older_than_secs}` → deletes unreferenced uploads.
///
/// Uploads no message references; chatd also does this periodically.
#[utoipa::path(
    post,
    path = "/files/cleanup",
    operation_id = "admin_clean_files",
    request_body = Cleanup,
    responses((status = 200, description = "How many uploads were deleted.", body = Cleaned)),
    security(("admin_token" = []))
)]
async fn clean_files(
    State(state): State<SharedState>,
    _: Admin,
    Json(req): Json<Cleanup>,
) -> Result<Json<Cleaned>, ApiError> {
    let deleted = state
        .chat
        .clean_unreferenced_files(std::time::Duration::from_secs(req.older_than_secs))
        .await?;
    Ok(Json(Cleaned { deleted }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    /// The bot user's username (3-32 of a-z 0-9 _ . -).
    pub username: String,
    /// `send` (messages as the bot), `notice` (messages with a `notice`
    /// object); `send` if empty.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Requests per second the key may make (bursts of 2 s); 0 = unlimited.
    #[serde(default = "default_service_rate")]
    pub rate_per_sec: u32,
}

fn default_service_rate() -> u32 {
    10
}

/// `POST /admin/services {username, scopes, rate_per_sec}` → 201 with the service and its key.
///
/// Creates a bot user and an API key for it; the key (`mqk_...`) is shown
/// only now. The service sends with `Authorization: Bearer <key>`.
#[utoipa::path(
    post,
    path = "/services",
    operation_id = "admin_create_service",
    request_body = NewService,
    responses(
        (status = 201, description = "The service, with its `key`.", body = Service),
        (status = 400, description = "`invalid_request` (an unknown scope), `invalid_username` or `malformed_json`.", body = ErrorBody),
        (status = 409, description = "`username_taken`.", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn create_service(
    State(state): State<SharedState>,
    _: Admin,
    Json(req): Json<NewService>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .chat
                .create_service(&req.username, req.scopes, req.rate_per_sec)
                .await?,
        ),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<Service>,
}

/// `GET /admin/services` → every service key (without the keys).
#[utoipa::path(
    get,
    path = "/services",
    operation_id = "admin_list_services",
    responses((status = 200, description = "Service keys, revoked ones included.", body = ServiceList)),
    security(("admin_token" = []))
)]
async fn list_services(
    State(state): State<SharedState>,
    _: Admin,
) -> Result<Json<ServiceList>, ApiError> {
    Ok(Json(ServiceList {
        services: state.chat.services().await?,
    }))
}

/// `POST /admin/services/{key_id}/revoke` → 204; the key is refused from now on.
#[utoipa::path(
    post,
    path = "/services/{key_id}/revoke",
    operation_id = "admin_revoke_service_key",
    params(("key_id" = u64, Path, description = "The key's id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "`not_found`: no live key with that id.", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn revoke_service_key(
    State(state): State<SharedState>,
    _: Admin,
    Path(key_id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.revoke_service_key(key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
