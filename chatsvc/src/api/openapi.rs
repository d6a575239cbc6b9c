//! The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`
//! and committed as `schemas/openapi.json`. `tests/openapi.rs` keeps the two
//! equal and checks that every route is in it;
//! `UPDATE_OPENAPI=1 cargo test -p mqchat-chatsvc --test openapi` rewrites
//! the file.
//!
//! # Documenting a route
//! Each resource module has a `Doc` listing its handlers; `ApiDoc` nests
//! them under the prefix the module is routed at (the tag is the module's
//! name), and merges the unprefixed ones (tagged by hand). A handler's
//! `#[utoipa::path]` gives the method, the path as its module routes it, the
//! parameters, the body, the success answers and the errors its domain call
//! gives. The errors that extractors and layers give are the same for every
//! route, so `ExtractorErrors` adds them here, in one place, from what each
//! operation declares:
//!
//! | the operation has | from | answers added |
//! | --- | --- | --- |
//! | security `bearer` / `admin_token` | `AuthUser` / `Admin` | 401 |
//! | a required `application/json` body | `Json` | 400, 413, 415 |
//! | query parameters | `Query` | 400 `invalid_request` |
//! | path parameters | `Path` | 404 `not_found` |
//! | a path under `/v1/` or `/admin/` | storage, `CatchPanicLayer` | 500, 503 |
//!
//! An answer the handler declares itself is kept as it is, so its
//! description names the extractor's codes too.

use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, Schema, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::SharedState;
use super::{
    admin, auth, conversations, files, forward, friends, groups, messages, ops, reactions, sync,
    users, web,
};

/// Security scheme of the `/v1` routes: a user's access token.
const BEARER: &str = "bearer";
/// Security scheme of the `/admin` routes: the admin token.
const ADMIN_TOKEN: &str = "admin_token";

/// The document as served and committed.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`.
pub fn router() -> Router<SharedState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// `GET /openapi.json` → this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object))
)]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mqchat",
        description = "The HTTP API of mqchat's chat service.

JSON in and out. Request bodies are limited to 64 KiB and reject unknown \
fields. Errors are `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}` with \
a stable snake_case `code` (listed in `schemas/errors.md`). Events reach clients \
over MQTT on `users/{id}/events` and through `GET /v1/sync`; their shapes are \
in `schemas/mqchat.schema.json`.

Besides the answers listed per operation: any request still running after \
30 s gets 408 with an empty body; an unknown path gets 404 `not_found`, and a \
known path with another method 405 `method_not_allowed`."
    ),
    paths(openapi_json),
    nest(
        (path = "/v1", api = auth::Doc),
        (path = "/v1", api = users::Doc),
        (path = "/v1", api = messages::Doc),
        (path = "/v1", api = forward::Doc),
        (path = "/v1", api = conversations::Doc),
        (path = "/v1", api = reactions::Doc),
        (path = "/v1", api = friends::Doc),
        (path = "/v1", api = groups::Doc),
        (path = "/v1", api = sync::Doc),
        (path = "/v1", api = files::Doc),
        (path = "/admin", api = admin::Doc),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Accounts and login sessions."),
        (name = "users", description = "Profiles."),
        (name = "messages", description = "Sending, editing, recalling, hiding, reacting to and searching messages."),
        (name = "conversations", description = "The conversation list, history, read markers, typing, pins, the caller's own settings."),
        (name = "friends", description = "Friends, friend requests, blocks and presence."),
        (name = "groups", description = "Groups, members and roles."),
        (name = "sync", description = "The event log, for catching up after being offline."),
        (name = "admin", description = "Operator API, authorized by the admin token (`admin.token` in the data dir)."),
        (name = "ops", description = "Health, metrics and this document."),
        (name = "web", description = "The demo web client."),
        (name = "mqtt", description = "MQTT over WebSocket."),
    ),
    modifiers(
        &Unprefixed,
        &MqttWebSocket,
        &OptionalBodies,
        &SecuritySchemes,
        &ExtractorErrors
    )
)]
pub struct ApiDoc;

/// The routes merged at the root: `nest` needs a prefix.
struct Unprefixed;

impl Modify for Unprefixed {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.merge(ops::Doc::openapi());
        doc.merge(web::Doc::openapi());
    }
}

/// `GET /mqtt` belongs to the broker's router, so it is described here.
struct MqttWebSocket;

impl Modify for MqttWebSocket {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let plain = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "text/plain; charset=utf-8",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                )
                .build()
        };
        let operation = OperationBuilder::new()
            .tag("mqtt")
            .operation_id(Some("mqtt_websocket"))
            .summary(Some("`GET /mqtt` → a WebSocket carrying MQTT."))
            .description(Some(
                "Subprotocols `mqtt` and `mqttv3.1`, binary frames, MQTT 3.1.1 or 5. \
                 Authentication is MQTT's: CONNECT with the user id (decimal) as \
                 username and an access token as password.",
            ))
            .response(
                "101",
                ResponseBuilder::new().description("Switched to the WebSocket."),
            )
            .response("400", plain("Not a valid WebSocket upgrade request."))
            .response("426", plain("The connection can't be upgraded."))
            .build();
        doc.paths.paths.insert(
            "/mqtt".to_owned(),
            PathItem::new(HttpMethod::Get, operation),
        );
    }
}

/// `request_body = Option<T>` is how utoipa marks a body that may be left
/// out, but it also makes its schema `T | null`, and a `null` body is refused.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let null = SchemaType::Type(Type::Null);
        let is_null =
            |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == null);
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                let Some(body) = op.request_body.as_mut() else {
                    continue;
                };
                for content in body.content.values_mut() {
                    if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                        let mut rest = one_of.items.iter().filter(|s| !is_null(s));
                        if let (Some(only), None) = (rest.next(), rest.next()) {
                            content.schema = Some(only.clone());
                        }
                    }
                }
            }
        }
    }
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <access_token>`, from login or refresh.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <admin token>`: the contents of \
                         `admin.token` in the data dir.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the answers that come from extractors and layers (see the module
/// docs), leaving those an operation declares itself.
struct ExtractorErrors;

impl Modify for ExtractorErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let bearer = SecurityRequirement::new(BEARER, Vec::<String>::new());
        let admin = SecurityRequirement::new(ADMIN_TOKEN, Vec::<String>::new());
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/v1/") || path.starts_with("/admin/");
            for op in operations(item) {
                let mut added: Vec<(&str, Response)> = Vec::new();
                let security = op.security.as_deref().unwrap_or_default();
                if security.contains(&bearer) {
                    added.push((
                        "401",
                        unauthorized(
                            "`missing_token`, `invalid_token` (bad, revoked) or `token_expired` (refresh it).",
                        ),
                    ));
                } else if security.contains(&admin) {
                    added.push((
                        "401",
                        unauthorized("`missing_token` or `invalid_token`: not the admin token."),
                    ));
                }
                if op.request_body.as_ref().is_some_and(takes_json) {
                    added.push((
                        "400",
                        error("`invalid_request` (a field missing, mistyped or unknown) or `malformed_json`."),
                    ));
                    added.push((
                        "413",
                        error("`payload_too_large`: the body is over 64 KiB."),
                    ));
                    added.push((
                        "415",
                        error("`unsupported_media_type`: no `Content-Type: application/json`."),
                    ));
                }
                let has = |place: ParameterIn| {
                    op.parameters
                        .iter()
                        .flatten()
                        .any(|p| p.parameter_in == place)
                };
                if has(ParameterIn::Query) {
                    added.push((
                        "400",
                        error(
                            "`invalid_request`: a query parameter is missing, mistyped or unknown.",
                        ),
                    ));
                }
                if has(ParameterIn::Path) {
                    added.push((
                        "404",
                        error("`not_found`: a path parameter is not a valid id."),
                    ));
                }
                if api {
                    added.push((
                        "500",
                        error("`internal`: a bug; details are in the server log."),
                    ));
                    added.push((
                        "503",
                        error("`unavailable`: storage is failing; retry later."),
                    ));
                }
                for (status, response) in added {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| response.into());
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Whether the body is read by the `Json` extractor: required JSON.
fn takes_json(body: &RequestBody) -> bool {
    matches!(body.required, Some(Required::True)) && body.content.contains_key("application/json")
}

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
}

fn unauthorized(description: &str) -> Response {
    let mut response = error(description);
    response.headers.insert(
        "WWW-Authenticate".to_owned(),
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("`Bearer`"))
            .build(),
    );
    response
}
