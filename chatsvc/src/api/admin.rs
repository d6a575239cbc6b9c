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

use super::error::{ApiError, Json, Path};
use super::AppState;
use crate::domain::model::User;
use crate::domain::webhooks::Webhook;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/online", get(online))
        .route("/users", post(create_user))
        .route("/users/{id}/password", post(reset_password))
        .route("/users/{id}/disconnect", post(disconnect))
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route("/webhooks/{id}", axum::routing::delete(delete_webhook))
        .route("/webhooks/{id}/replay", post(replay_webhook))
}

/// Proof that the caller holds the admin token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("missing_token", "admin token required"))?;
        if bool::from(
            presented
                .trim()
                .as_bytes()
                .ct_eq(state.admin_token.as_bytes()),
        ) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized(
                "invalid_token",
                "invalid admin token",
            ))
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Online {
    pub user_ids: Vec<u64>,
    pub connections: usize,
}

/// `GET /admin/online` → users with a live MQTT connection.
async fn online(State(state): State<AppState>, _: Admin) -> Json<Online> {
    Json(Online {
        user_ids: state.broker.online_users(),
        connections: state.broker.connection_count(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
}

/// `POST /admin/users {username, password}` → 201 with the user.
async fn create_user(
    State(state): State<AppState>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

/// `POST /admin/users/{id}/password {password}` → 204; every session of the
/// user ends (refresh tokens, access tokens, MQTT connections).
async fn reset_password(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<u64>,
    Json(req): Json<NewPassword>,
) -> Result<StatusCode, ApiError> {
    state.chat.reset_password(id, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
pub struct Disconnected {
    pub connections: usize,
}

/// `POST /admin/users/{id}/disconnect` → how many MQTT connections were closed.
async fn disconnect(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<u64>,
) -> Json<Disconnected> {
    Json(Disconnected {
        connections: state.broker.disconnect(id, None),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    /// Event types (`message.created`, `user.offline_message`); all if empty.
    #[serde(default)]
    pub events: Vec<String>,
}

/// `POST /admin/webhooks {url, events}` → 201 with the webhook and its
/// signing secret (shown only now).
async fn create_webhook(
    State(state): State<AppState>,
    _: Admin,
    Json(req): Json<NewWebhook>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.chat.create_webhook(&req.url, req.events).await?),
    ))
}

#[derive(Debug, Serialize)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// `GET /admin/webhooks` → active webhooks (without secrets).
async fn list_webhooks(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(WebhookList {
        webhooks: state.chat.webhooks().await?,
    }))
}

/// `DELETE /admin/webhooks/{id}` → 204; stops deliveries to it.
async fn delete_webhook(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.chat.delete_webhook(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Re-send deliveries with an id greater than this.
    #[serde(default)]
    pub after: u64,
}

#[derive(Debug, Serialize)]
pub struct Replayed {
    pub requeued: usize,
}

/// `POST /admin/webhooks/{id}/replay {after}` → how many deliveries were queued again.
async fn replay_webhook(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<u64>,
    Json(req): Json<Replay>,
) -> Result<Json<Replayed>, ApiError> {
    Ok(Json(Replayed {
        requeued: state.chat.replay_webhook(id, req.after).await?,
    }))
}
