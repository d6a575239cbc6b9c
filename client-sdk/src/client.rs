//! `Client`: the HTTP uplink and the session's tokens.
//!
//! This file holds the session and the retry core; the endpoints are
//! `impl Client` blocks per resource: `users`, `messages`, `reactions`, `social`,
//! `groups`.
//!
//! Every authenticated call goes through [`Client::call`], which
//! - refreshes the access token shortly before it expires (so calls rarely
//!   meet a 401 at all),
//! - on a 401 `token_expired` / `invalid_token` refreshes once and retries
//!   (the server refused the request before doing anything),
//! - retries transient failures with backoff, as far as the call's [`Retry`]
//!   class allows.
//!
//! A lost answer does not mean a lost request: the server may have done the
//! work. So a call is retried after a failure that may have reached the
//! server only when doing it twice is the same as doing it once:
//!
//! | class | calls | why |
//! | --- | --- | --- |
//! | `Always` | reads; `send`, `send_batch` (deduplicated by `client_msg_id`); `ack`, `mark_read` (markers only move forward); `block`, `delete_for_me`, `add_group_members`, `set_group_role` (a repeat finds the state already set and changes nothing visible); `recall` (a repeat answers the tombstone again) | repeats are harmless |
//! | `Always`, 404 = done | `remove_friend`, `unblock`, `leave_group`, `remove_group_member`, `dissolve_group` | a repeat after the first attempt worked answers 404; the goal state holds, so that 404 is a success |
//! | `IfNotSent` | `send_friend_request`, `accept/reject/cancel_friend_request`, `create_group`, `rename_group`, `transfer_group`, `edit`, `logout` | a repeat creates a second group, posts a second system message, answers 409/403 for work that succeeded, or (edits) may overwrite a newer edit made meanwhile on another device |
//! | `Never` | `typing` | a late typing indicator is worse than none |
//!
//! `IfNotSent` calls are retried only when the request provably never
//! reached the server: the connection was refused, or a 429 refused it
//! unprocessed. Otherwise the error goes to the caller, who knows whether to
//! look (e.g. [`Client::groups`]) before trying again.
//!
//! Refresh tokens rotate: each refresh answers a new one and the old one stops
//! working. So refreshes are single-flight (one at a time, and a caller that
//! waited for someone else's refresh uses its result instead of refreshing
//! again); two concurrent refreshes with the same token would make the second
//! fail and end the session.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::distributions::Alphanumeric;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::backoff::RetryPolicy;
use crate::error::{api_error, SdkError};
use crate::model::{
    BlockList, Body, Conversation, ConversationList, ConversationUpdated, Friend, FriendList,
    FriendRequest, FriendRequestList, Group, GroupAddPolicy, GroupInvitation, GroupList, GroupRole,
    HistoryPage, InvitationList, LoginResponse, Message, OutgoingMessage, Presence, PresenceList,
    ReadMarker, Recipient, SearchResults, SyncPage, User,
};
use crate::Result;

/// Whole-request timeout unless configured: long enough for a slow mobile
/// link, short enough that a dead connection is retried in reasonable time.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Refresh this long before expiry at most (a fifth of the lifetime for
/// short-lived tokens), so a token never expires in the middle of a call.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Longest `client_msg_id` the server accepts.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;
/// Most sends the server takes in one `POST /v1/messages/batch`.
pub const MAX_BATCH_SENDS: usize = 100;
/// Largest `limit` the server accepts on `GET /v1/sync`.
pub const MAX_SYNC_LIMIT: u32 = 500;
/// Most users the server answers in one `GET /v1/presence`;
/// [`Client::presence`] asks in batches of this size.
pub const MAX_PRESENCE_BATCH: usize = 200;
/// Longest search query the server accepts, in characters.
pub const MAX_SEARCH_QUERY_LEN: usize = 200;

/// A fresh random `client_msg_id` (32 alphanumeric characters).
///
/// Generate one per logical message and keep it for every retry of that
/// message; persist it with an outbox entry to stay duplicate-free across
/// app restarts (see [`Client::send_with_id`]).
pub fn new_client_msg_id() -> String {
    random_id(32)
}

pub(crate) fn random_id(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Configures a [`Client`] before logging in.
///
/// ```no_run
/// # async fn example() -> Result<(), mqchat_sdk::SdkError> {
/// use std::time::Duration;
/// use mqchat_sdk::{Client, RetryPolicy};
///
/// let client = Client::builder("http://127.0.0.1:8080")
///     .request_timeout(Duration::from_secs(10))
///     .retry(RetryPolicy::NONE)
///     .login("alice", "correct horse")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    /// Servers in the order to try them; never empty.
    base_urls: Vec<String>,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// `base_url` is the server's HTTP root, e.g. `http://127.0.0.1:8080`.
    pub fn new(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_urls: vec![base_url.into()],
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }

    /// More servers (nodes of one cluster, e.g. `http://10.0.0.2:8080`)
    /// behind the first: a call whose connection to one is refused or
    /// times out goes to the next at once (it never reached the first, so
    /// any call may move), and later calls stay with the one that
    /// answered.
    pub fn fallback(mut self, base_url: impl Into<String>) -> ClientBuilder {
        self.base_urls.push(base_url.into());
        self
    }

    /// Timeout of one HTTP attempt, from sending to the last body byte.
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.request_timeout = timeout;
        self
    }

    /// Timeout of establishing one TCP connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of transient failures: of every call that is safe to repeat,
    /// and of the others only while the request never reached the server
    /// (see the table in the `client` module's docs). Login, register and
    /// resume are never retried.
    pub fn retry(mut self, retry: RetryPolicy) -> ClientBuilder {
        self.retry = retry;
        self
    }

    /// `POST /v1/auth/login`: starts a session.
    pub async fn login(self, username: &str, password: &str) -> Result<Client> {
        let http = self.http()?;
        let body = json!({"username": username, "password": password});
        let bytes = http
            .execute(&Request::post("/v1/auth/login", body), None)
            .await?;
        let login: LoginResponse = decode(&Method::POST, "/v1/auth/login", &bytes)?;
        Ok(Client::from_login(http, login))
    }

    /// `POST /v1/auth/register`: creates an account (does not log in).
    pub async fn register(self, username: &str, password: &str) -> Result<User> {
        let http = self.http()?;
        let body = json!({"username": username, "password": password});
        let bytes = http
            .execute(&Request::post("/v1/auth/register", body), None)
            .await?;
        decode(&Method::POST, "/v1/auth/register", &bytes)
    }

    /// Resumes a session from a refresh token saved earlier with
    /// [`Client::refresh_token`], without the password. The token is spent:
    /// save the client's new one.
    pub async fn resume(self, refresh_token: &str) -> Result<Client> {
        let http = self.http()?;
        let login = http.refresh(refresh_token).await?;
        Ok(Client::from_login(http, login))
    }

    fn http(&self) -> Result<Http> {
        let mut bases = Vec::with_capacity(self.base_urls.len());
        for base in &self.base_urls {
            let base = base.trim_end_matches('/');
            if !base.starts_with("http://") || base.len() <= "http://".len() {
                return Err(SdkError::InvalidInput {
                    what: "base URL",
                    reason: format!(
                        "{base:?}: expected http://HOST[:PORT] (this build has no TLS)"
                    ),
                });
            }
            bases.push(base.to_owned());
        }
        let client = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(SdkError::Setup)?;
        Ok(Http {
            client,
            bases,
            current: std::sync::atomic::AtomicUsize::new(0),
            retry: self.retry,
        })
    }
}

/// A logged-in session with the server. Cheap to clone: clones share the
/// session (tokens, refreshes) and the HTTP connection pool.
///
/// ```no_run
/// # async fn example() -> Result<(), mqchat_sdk::SdkError> {
/// use mqchat_sdk::{Client, Recipient};
///
/// let alice = Client::login("http://127.0.0.1:8080", "alice", "correct horse").await?;
/// let Some(bob) = alice.user_by_name("bob").await? else {
///     return Ok(()); // no such user
/// };
/// let sent = alice.send_text(Recipient::User(bob.id), "hi bob").await?;
/// println!("stored as #{} in conversation {}", sent.seq, sent.conversation_id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    /// Fixed for the session's lifetime: topics and MQTT login use it.
    user_id: u64,
    session: Mutex<Session>,
    /// Makes refreshes single-flight (see the module docs). The only lock held
    /// across `.await` in the SDK, and it is an async one: waiting here is
    /// exactly what a second refresher must do.
    refresh_gate: tokio::sync::Mutex<()>,
}

struct Session {
    access_token: String,
    refresh_token: String,
    expires_at: Instant,
    lifetime: Duration,
    /// Bumped on every refresh, so a caller can tell whether the token it
    /// saw rejected is still the current one.
    generation: u64,
    user: User,
    ended: Option<Ended>,
}

#[derive(Debug, Clone, Copy)]
enum Ended {
    LoggedOut,
    Expired,
}

impl Session {
    fn alive(&self) -> Result<()> {
        match self.ended {
            None => Ok(()),
            Some(Ended::LoggedOut) => Err(SdkError::LoggedOut),
            Some(Ended::Expired) => Err(SdkError::SessionExpired),
        }
    }

    fn install(&mut self, login: LoginResponse) {
        let lifetime = Duration::from_secs(login.expires_in);
        self.access_token = login.access_token;
        self.refresh_token = login.refresh_token;
        self.lifetime = lifetime;
        self.expires_at = Instant::now() + lifetime;
        self.generation += 1;
        self.user = login.user;
    }
}

/// Whether a token with `lifetime` that expires at `expires_at` should be
/// refreshed at `now`.
fn refresh_due(now: Instant, expires_at: Instant, lifetime: Duration) -> bool {
    let margin = (lifetime / 5).min(MAX_REFRESH_MARGIN);
    now + margin >= expires_at
}

impl fmt::Debug for Client {
    /// Never prints tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.http.base())
            .field("user_id", &self.inner.user_id)
            .finish_non_exhaustive()
    }
}

mod groups;
mod messages;
mod reactions;
mod replies;
mod social;
mod users;

impl Client {
    /// Starts configuring a client; see [`ClientBuilder`].
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(base_url)
    }

    /// `POST /v1/auth/login` with default settings.
    pub async fn login(base_url: &str, username: &str, password: &str) -> Result<Client> {
        ClientBuilder::new(base_url).login(username, password).await
    }

    /// `POST /v1/auth/register` with default settings. Creates the account;
    /// call [`Client::login`] to use it.
    pub async fn register(base_url: &str, username: &str, password: &str) -> Result<User> {
        ClientBuilder::new(base_url)
            .register(username, password)
            .await
    }

    fn from_login(http: Http, login: LoginResponse) -> Client {
        let lifetime = Duration::from_secs(login.expires_in);
        Client {
            inner: Arc::new(Inner {
                http,
                user_id: login.user.id,
                session: Mutex::new(Session {
                    access_token: login.access_token,
                    refresh_token: login.refresh_token,
                    expires_at: Instant::now() + lifetime,
                    lifetime,
                    generation: 0,
                    user: login.user,
                    ended: None,
                }),
                refresh_gate: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The logged-in user's id.
    pub fn user_id(&self) -> u64 {
        self.inner.user_id
    }

    /// The logged-in user as last seen by this client (login, refresh,
    /// [`me`](Self::me), [`update_me`](Self::update_me)); no request.
    pub fn session_user(&self) -> User {
        self.session().user.clone()
    }

    /// The server's HTTP root in use (the one that last answered, of
    /// several: [`ClientBuilder::fallback`]), without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.inner.http.base()
    }

    /// The newest refresh token, to save for [`ClientBuilder::resume`]. It
    /// changes on every refresh; only the newest one works.
    pub fn refresh_token(&self) -> Result<String> {
        let session = self.session();
        session.alive()?;
        Ok(session.refresh_token.clone())
    }

    /// A valid access token (refreshed first if it is about to expire), e.g.
    /// to log in another MQTT client as this user.
    pub async fn access_token(&self) -> Result<String> {
        Ok(self.bearer().await?.0)
    }

    /// `POST /v1/auth/logout`: ends the session on the server (which also
    /// disconnects its MQTT connections). Afterwards every call on this
    /// client and its clones fails with [`SdkError::LoggedOut`].
    pub async fn logout(&self) -> Result<()> {
        let refresh_token = self.refresh_token()?;
        let request = Request::post("/v1/auth/logout", json!({"refresh_token": refresh_token}))
            .retry(Retry::IfNotSent);
        match self.call(request).await {
            // The session is gone either way.
            Ok(_) | Err(SdkError::SessionExpired) => {
                self.session().ended = Some(Ended::LoggedOut);
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // A panic while holding this lock cannot leave a half-written session
        // (every write is a plain field assignment), so poisoning is ignored.
        self.inner
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current access token and its generation, refreshing first when it
    /// is about to expire.
    pub(crate) async fn bearer(&self) -> Result<(String, u64)> {
        let (due, generation) = {
            let session = self.session();
            session.alive()?;
            let due = refresh_due(Instant::now(), session.expires_at, session.lifetime);
            (due, session.generation)
        };
        if due {
            if let Err(err) = self.refresh(generation).await {
                // A token that is due but not yet expired still works; a
                // refresh that failed for a passing reason is retried on the
                // next call.
                if !err.is_transient() || Instant::now() >= self.session().expires_at {
                    return Err(err);
                }
                tracing::warn!(%err, "early token refresh failed; using the current token");
            }
        }
        let session = self.session();
        session.alive()?;
        Ok((session.access_token.clone(), session.generation))
    }

    /// Replaces the tokens, unless they were already replaced since the
    /// caller saw generation `seen` (then the newer ones are the answer).
    pub(crate) async fn refresh(&self, seen: u64) -> Result<()> {
        let _gate = self.inner.refresh_gate.lock().await;
        let refresh_token = {
            let session = self.session();
            session.alive()?;
            if session.generation != seen {
                return Ok(());
            }
            session.refresh_token.clone()
        };
        match self.inner.http.refresh(&refresh_token).await {
            Ok(login) => {
                self.session().install(login);
                tracing::debug!(user_id = self.inner.user_id, "access token refreshed");
                Ok(())
            }
            Err(SdkError::SessionExpired) => {
                self.session().ended = Some(Ended::Expired);
                Err(SdkError::SessionExpired)
            }
            Err(err) => Err(err),
        }
    }

    async fn call_json<T: DeserializeOwned>(&self, request: Request) -> Result<T> {
        let bytes = self.call(request.clone()).await?;
        decode(&request.method, &request.path, &bytes)
    }

    /// One authenticated call: bearer token, one refresh on a stale-token
    /// 401, retries of transient failures as far as `request.retry` allows.
    async fn call(&self, request: Request) -> Result<Bytes> {
        let retry = self.inner.http.retry;
        let mut attempt = 0u32;
        let mut refreshed = false;
        // An earlier attempt failed after it may have reached the server, so
        // it may have done the work.
        let mut maybe_done = false;
        loop {
            let (token, generation) = self.bearer().await?;
            let err = match self.inner.http.execute(&request, Some(&token)).await {
                Ok(bytes) => return Ok(bytes),
                Err(err) => err,
            };
            if maybe_done && request.done_if_gone && err.status() == Some(StatusCode::NOT_FOUND) {
                tracing::debug!(%err, "an earlier attempt took effect");
                return Ok(Bytes::new());
            }
            if err.is_stale_token() && !refreshed {
                refreshed = true;
                self.refresh(generation).await?;
            } else if request.retry.allows(&err) && attempt + 1 < retry.max_attempts {
                maybe_done |= !err.never_reached_server();
                let delay = retry.backoff.delay(attempt);
                attempt += 1;
                tracing::debug!(%err, ?delay, attempt, "retrying");
                tokio::time::sleep(delay).await;
            } else {
                return Err(err);
            }
        }
    }
}

/// Refuses, before any request, a `client_msg_id` the server would refuse.
fn check_client_msg_id(id: &str) -> Result<()> {
    let len = id.chars().count();
    if len == 0 || len > MAX_CLIENT_MSG_ID_LEN {
        return Err(SdkError::InvalidInput {
            what: "client_msg_id",
            reason: format!("{len} characters, expected 1..={MAX_CLIENT_MSG_ID_LEN}"),
        });
    }
    Ok(())
}

/// `POST /v1/messages/batch`'s answer.
#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    status: u16,
    message: Option<Message>,
    error: Option<BatchError>,
}

#[derive(Default, Deserialize)]
struct BatchError {
    code: String,
    message: String,
}

/// When a failed request may be sent again; see the module docs for which
/// call is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Doing it twice is the same as once: retry every transient failure.
    Always,
    /// A repeat would not be harmless: retry only when the request never
    /// reached the server.
    IfNotSent,
    /// Worthless late: never retry.
    Never,
}

impl Retry {
    fn allows(self, err: &SdkError) -> bool {
        match self {
            Retry::Always => err.is_transient(),
            Retry::IfNotSent => err.is_transient() && err.never_reached_server(),
            Retry::Never => false,
        }
    }
}

/// One HTTP request, described so it can be sent again unchanged.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    retry: Retry,
    /// A delete: once an attempt may have reached the server, a 404 answer
    /// to a later one means that attempt did the job (the thing is gone).
    done_if_gone: bool,
}

impl Request {
    /// A request that is safe to repeat ([`Retry::Always`]).
    fn new(method: Method, path: String, body: Option<Value>) -> Request {
        Request {
            method,
            path,
            query: Vec::new(),
            body,
            retry: Retry::Always,
            done_if_gone: false,
        }
    }

    fn get(path: impl Into<String>) -> Request {
        Request::new(Method::GET, path.into(), None)
    }

    fn post(path: &str, body: Value) -> Request {
        Request::new(Method::POST, path.to_owned(), Some(body))
    }

    /// A POST whose endpoint takes no body.
    fn post_empty(path: String) -> Request {
        Request::new(Method::POST, path, None)
    }

    fn query(mut self, key: &'static str, value: String) -> Request {
        self.query.push((key, value));
        self
    }

    fn retry(mut self, retry: Retry) -> Request {
        self.retry = retry;
        self
    }

    fn done_if_gone(mut self) -> Request {
        self.done_if_gone = true;
        self
    }
}

/// The HTTP transport: base URLs, connection pool, retry policy.
struct Http {
    client: reqwest::Client,
    /// Never empty; `current` indexes the one in use.
    bases: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
    retry: RetryPolicy,
}

impl Http {
    fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// Sends once to the server in use, or, if the connection to it
    /// fails (the request never reached it), to each other server in
    /// turn; the one that answers stays in use. A non-2xx answer becomes
    /// [`SdkError::Api`].
    async fn execute(&self, request: &Request, bearer: Option<&str>) -> Result<Bytes> {
        use std::sync::atomic::Ordering::Relaxed;
        let first = self.current.load(Relaxed);
        let mut tried = 0;
        loop {
            let i = (first + tried) % self.bases.len();
            match self.execute_on(&self.bases[i], request, bearer).await {
                Err(SdkError::Transport { source, .. })
                    if source.is_connect() && tried + 1 < self.bases.len() =>
                {
                    tracing::info!(err = %source, server = %self.bases[i], "server unreachable; trying the next");
                    tried += 1;
                }
                result => {
                    if tried > 0 {
                        self.current.store(i, Relaxed);
                    }
                    return result;
                }
            }
        }
    }

    /// Sends once to `base`.
    async fn execute_on(
        &self,
        base: &str,
        request: &Request,
        bearer: Option<&str>,
    ) -> Result<Bytes> {
        let url = format!("{base}{}", request.path);
        let mut builder = self.client.request(request.method.clone(), url);
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        if let Some(token) = bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let transport = |source| SdkError::Transport {
            method: request.method.clone(),
            path: request.path.clone(),
            source,
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(api_error(
                request.method.clone(),
                &request.path,
                status,
                &bytes,
            ))
        }
    }

    /// `POST /v1/auth/refresh`. Retried only when the request provably never
    /// reached the server (connect failure): a lost answer may mean the
    /// server already rotated the token, and resending the old one would
    /// fail. A 401/403 means the session is over.
    async fn refresh(&self, refresh_token: &str) -> Result<LoginResponse> {
        let request = Request::post("/v1/auth/refresh", json!({"refresh_token": refresh_token}));
        let mut attempt = 0u32;
        loop {
            match self.execute(&request, None).await {
                Ok(bytes) => return decode(&request.method, &request.path, &bytes),
                Err(err)
                    if matches!(
                        err.status(),
                        Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                    ) =>
                {
                    tracing::info!(%err, "refresh token rejected");
                    return Err(SdkError::SessionExpired);
                }
                Err(SdkError::Transport { source, .. })
                    if source.is_connect() && attempt + 1 < self.retry.max_attempts =>
                {
                    let delay = self.retry.backoff.delay(attempt);
                    attempt += 1;
                    tracing::debug!(err = %source, ?delay, "retrying token refresh");
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

fn decode<T: DeserializeOwned>(method: &Method, path: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| SdkError::Decode {
        method: method.clone(),
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_a_fifth_capped_at_a_minute() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        // 1 h token: refresh in the last minute.
        assert!(!refresh_due(now, now + Duration::from_secs(61), hour));
        assert!(refresh_due(now, now + Duration::from_secs(60), hour));
        // 30 s token: refresh in the last 6 s.
        let short = Duration::from_secs(30);
        assert!(!refresh_due(now, now + Duration::from_secs(7), short));
        assert!(refresh_due(now, now + Duration::from_secs(6), short));
        // Already expired, or no lifetime at all.
        assert!(refresh_due(now + hour, now, hour));
        assert!(refresh_due(now, now, Duration::ZERO));
    }

    fn api(status: StatusCode) -> SdkError {
        SdkError::Api {
            method: Method::POST,
            path: "/v1/groups".into(),
            status,
            code: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn retry_classes() {
        let unavailable = api(StatusCode::SERVICE_UNAVAILABLE);
        let throttled = api(StatusCode::TOO_MANY_REQUESTS);
        let refused = api(StatusCode::CONFLICT);
        assert!(Retry::Always.allows(&unavailable));
        assert!(Retry::Always.allows(&throttled));
        assert!(!Retry::Always.allows(&refused));
        // A 503 may come after the work was done; a 429 never does.
        assert!(!Retry::IfNotSent.allows(&unavailable));
        assert!(Retry::IfNotSent.allows(&throttled));
        assert!(!Retry::IfNotSent.allows(&refused));
        assert!(!Retry::Never.allows(&throttled));
    }

    #[tokio::test]
    async fn a_refused_connection_never_reached_the_server(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // A port nothing listens on any more: the connection is refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(listener);
        let http = ClientBuilder::new(format!("http://{addr}")).http()?;
        let err = http
            .execute(&Request::post("/v1/groups", json!({})), None)
            .await
            .err()
            .ok_or("a request to a closed port succeeded")?;
        assert!(err.never_reached_server(), "{err}");
        assert!(Retry::IfNotSent.allows(&err));
        Ok(())
    }

    #[test]
    fn client_msg_ids_fit_and_differ() {
        let a = new_client_msg_id();
        let b = new_client_msg_id();
        assert_eq!(a.len(), 32);
        assert!(a.len() <= MAX_CLIENT_MSG_ID_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_non_http_base_urls() {
        for bad in ["https://chat.example", "127.0.0.1:8080", "http://", ""] {
            let err = ClientBuilder::new(bad).http().err();
            assert!(
                matches!(err, Some(SdkError::InvalidInput { .. })),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn trims_trailing_slash() -> Result<()> {
        let http = ClientBuilder::new("http://127.0.0.1:8080/").http()?;
        assert_eq!(http.base(), "http://127.0.0.1:8080");
        Ok(())
    }
}
