//! `Client`: the HTTP uplink and the session's tokens.
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
    BlockList, Body, Conversation, ConversationList, Friend, FriendList, FriendRequest,
    FriendRequestList, Group, GroupAddPolicy, GroupInvitation, GroupList, GroupRole, HistoryPage,
    InvitationList, LoginResponse, Message, OutgoingMessage, Presence, PresenceList, ReadMarker,
    Recipient, SearchResults, SyncPage, User,
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
    base_url: String,
    request_timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// `base_url` is the server's HTTP root, e.g. `http://127.0.0.1:8080`.
    pub fn new(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
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
        let base = self.base_url.trim_end_matches('/');
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(SdkError::InvalidInput {
                what: "base URL",
                reason: format!("{base:?}: expected http://HOST[:PORT] (this build has no TLS)"),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(SdkError::Setup)?;
        Ok(Http {
            client,
            base: base.to_owned(),
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
            .field("base_url", &self.inner.http.base)
            .field("user_id", &self.inner.user_id)
            .finish_non_exhaustive()
    }
}

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

    /// The server's HTTP root, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.http.base
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

    /// `GET /v1/me`.
    pub async fn me(&self) -> Result<User> {
        let user: User = self.call_json(Request::get("/v1/me")).await?;
        self.session().user = user.clone();
        Ok(user)
    }

    /// `PATCH /v1/me`: sets the display name (`None` sends `null`).
    pub async fn update_me(&self, display_name: Option<&str>) -> Result<User> {
        let request = Request::new(
            Method::PATCH,
            "/v1/me".to_owned(),
            Some(json!({"display_name": display_name})),
        );
        let user: User = self.call_json(request).await?;
        self.session().user = user.clone();
        Ok(user)
    }

    /// `PATCH /v1/me {group_add_policy}`: who may add this user to groups
    /// directly; anyone else's add becomes an invitation
    /// ([`group_invitations`](Self::group_invitations)).
    pub async fn set_group_add_policy(&self, policy: GroupAddPolicy) -> Result<User> {
        let request = Request::new(
            Method::PATCH,
            "/v1/me".to_owned(),
            Some(json!({ "group_add_policy": policy })),
        );
        let user: User = self.call_json(request).await?;
        self.session().user = user.clone();
        Ok(user)
    }

    /// `GET /v1/users/{id}`.
    pub async fn user(&self, id: u64) -> Result<User> {
        self.call_json(Request::get(format!("/v1/users/{id}")))
            .await
    }

    /// `GET /v1/users?username=NAME`: `None` if no such user.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let request = Request::get("/v1/users").query("username", username.to_owned());
        match self.call_json(request).await {
            Ok(user) => Ok(Some(user)),
            Err(err) if err.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `POST /v1/messages` with body `{"text": text}`; see [`send`](Self::send).
    /// To write in a group, send to [`Recipient::Group`].
    pub async fn send_text(&self, to: Recipient, text: &str) -> Result<Message> {
        let mut body = Body::new();
        body.insert("text".to_owned(), Value::String(text.to_owned()));
        self.send(to, body).await
    }

    /// `POST /v1/messages`: sends a message and returns it as stored.
    ///
    /// Picks a fresh `client_msg_id` and keeps it for every retry, so a retry
    /// after a lost answer returns the original message instead of storing a
    /// second copy. To stay duplicate-free across restarts too, store your own
    /// id with the outgoing message and use [`send_with_id`](Self::send_with_id).
    pub async fn send(&self, to: Recipient, body: Body) -> Result<Message> {
        self.send_with_id(to, &new_client_msg_id(), body).await
    }

    /// `POST /v1/messages` with a caller-chosen `client_msg_id`
    /// (1..=64 characters). Sending the same id again returns the message
    /// stored the first time.
    pub async fn send_with_id(
        &self,
        to: Recipient,
        client_msg_id: &str,
        body: Body,
    ) -> Result<Message> {
        check_client_msg_id(client_msg_id)?;
        let request = Request::post(
            "/v1/messages",
            json!({"to": to, "client_msg_id": client_msg_id, "body": body}),
        );
        self.call_json(request).await
    }

    /// `POST /v1/messages/batch`: up to [`MAX_BATCH_SENDS`] sends in one
    /// request, stored in the order given; one result per send, in order.
    ///
    /// Each send is handled as [`send_with_id`](Self::send_with_id) would
    /// be and succeeds or fails on its own: `Ok` with the stored message
    /// (or the original, for a `client_msg_id` already used), or the
    /// [`SdkError::Api`] a single send would have got. A failure of the
    /// request itself (the network, a batch the server refused whole) is
    /// the outer `Err`. The request is retried like any idempotent call; a
    /// send that failed transiently ([`SdkError::is_transient`], e.g. 429)
    /// can be sent again with the same `client_msg_id` without risk of a
    /// duplicate.
    pub async fn send_batch(&self, sends: &[OutgoingMessage]) -> Result<Vec<Result<Message>>> {
        if sends.is_empty() || sends.len() > MAX_BATCH_SENDS {
            return Err(SdkError::InvalidInput {
                what: "batch",
                reason: format!("{} sends, expected 1..={MAX_BATCH_SENDS}", sends.len()),
            });
        }
        for send in sends {
            check_client_msg_id(&send.client_msg_id)?;
        }
        const PATH: &str = "/v1/messages/batch";
        let answer: BatchAnswer = self
            .call_json(Request::post(PATH, json!({ "messages": sends })))
            .await?;
        if answer.results.len() != sends.len() {
            return Err(SdkError::Decode {
                method: Method::POST,
                path: PATH.to_owned(),
                source: serde::de::Error::custom(format!(
                    "{} results for {} sends",
                    answer.results.len(),
                    sends.len()
                )),
            });
        }
        Ok(answer
            .results
            .into_iter()
            .map(|r| match (r.message, r.error) {
                (Some(message), _) if r.status < 300 => Ok(message),
                (_, error) => {
                    let error = error.unwrap_or_default();
                    Err(SdkError::Api {
                        method: Method::POST,
                        path: PATH.to_owned(),
                        status: StatusCode::from_u16(r.status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        code: error.code,
                        message: error.message,
                    })
                }
            })
            .collect())
    }

    /// `GET /v1/conversations`.
    pub async fn conversations(&self) -> Result<Vec<Conversation>> {
        let list: ConversationList = self.call_json(Request::get("/v1/conversations")).await?;
        Ok(list.conversations)
    }

    /// `GET /v1/conversations/{id}/messages`: messages before `before_seq`
    /// (the newest ones if `None`), ascending by seq. Page backwards by passing
    /// the first message's seq as the next `before_seq`.
    pub async fn history(
        &self,
        conversation_id: u64,
        before_seq: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage> {
        let mut request = Request::get(format!("/v1/conversations/{conversation_id}/messages"));
        if let Some(before_seq) = before_seq {
            request = request.query("before_seq", before_seq.to_string());
        }
        if let Some(limit) = limit {
            request = request.query("limit", limit.to_string());
        }
        self.call_json(request).await
    }

    /// `GET /v1/sync`: inbox events after `after`, at most `limit`
    /// (the server accepts up to [`MAX_SYNC_LIMIT`]). Most apps use
    /// [`connect`](Self::connect) instead, which syncs as needed.
    pub async fn sync(&self, after: u64, limit: u32) -> Result<SyncPage> {
        let request = Request::get("/v1/sync")
            .query("after", after.to_string())
            .query("limit", limit.to_string());
        self.call_json(request).await
    }

    /// `POST /v1/sync/ack`: records that `device_id` has everything up to
    /// `cursor`.
    pub async fn ack(&self, device_id: &str, cursor: u64) -> Result<()> {
        let request = Request::post(
            "/v1/sync/ack",
            json!({"device_id": device_id, "cursor": cursor}),
        );
        self.call(request).await.map(drop)
    }

    /// `PATCH /v1/messages/{id}` with body `{"text": text}`; see
    /// [`edit`](Self::edit).
    pub async fn edit_text(&self, message_id: u64, text: &str) -> Result<Message> {
        let mut body = Body::new();
        body.insert("text".to_owned(), Value::String(text.to_owned()));
        self.edit(message_id, body).await
    }

    /// `PATCH /v1/messages/{id}`: replaces the body of one's own text message
    /// (the new body must carry `text`) and returns the message as edited.
    /// Every member gets [`Event::MessageEdited`](crate::Event::MessageEdited).
    ///
    /// Not retried once the request may have reached the server: a late
    /// repeat could overwrite a newer edit made meanwhile on another device.
    /// Errors: `forbidden` (not the sender's, or a system message),
    /// `conflict` (recalled, or not a text message).
    pub async fn edit(&self, message_id: u64, body: Body) -> Result<Message> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/messages/{message_id}"),
            Some(json!({"body": body})),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `POST /v1/messages/{id}/recall`: takes one's own message back and
    /// returns the tombstone (body `{}`, `recalled_at` set). Every member
    /// gets [`Event::MessageRecalled`](crate::Event::MessageRecalled).
    /// Recalling again answers the same tombstone, so this is retried.
    ///
    /// Errors: `forbidden` (not the sender's), `recall_window_passed` (see
    /// [`ErrorCode::RecallWindowPassed`](crate::ErrorCode::RecallWindowPassed)).
    pub async fn recall(&self, message_id: u64) -> Result<Message> {
        let request = Request::post_empty(format!("/v1/messages/{message_id}/recall"));
        self.call_json(request).await
    }

    /// `DELETE /v1/messages/{id}`: deletes a message for this user only (it
    /// leaves their history and search; others keep it). This user's devices
    /// get [`Event::MessageHidden`](crate::Event::MessageHidden).
    pub async fn delete_for_me(&self, message_id: u64) -> Result<()> {
        let request = Request::new(Method::DELETE, format!("/v1/messages/{message_id}"), None);
        self.call(request).await.map(drop)
    }

    /// `GET /v1/search?q=&limit=`: messages of this user's conversations that
    /// contain every word of `query` (the last one as a prefix), newest
    /// first. The server caps `limit` at 100 (default 20).
    pub async fn search(&self, query: &str, limit: Option<u32>) -> Result<Vec<Message>> {
        let len = query.chars().count();
        if query.trim().is_empty() || len > MAX_SEARCH_QUERY_LEN {
            return Err(SdkError::InvalidInput {
                what: "search query",
                reason: format!(
                    "{len} characters, expected 1..={MAX_SEARCH_QUERY_LEN} with a word in them"
                ),
            });
        }
        let mut request = Request::get("/v1/search").query("q", query.to_owned());
        if let Some(limit) = limit {
            request = request.query("limit", limit.to_string());
        }
        let results: SearchResults = self.call_json(request).await?;
        Ok(results.messages)
    }

    /// `POST /v1/conversations/{id}/read`: everything up to `seq` has been
    /// read. Answers the read marker, which never moves backwards (nor past
    /// the conversation's last message). Senders get
    /// [`Event::ReceiptRead`](crate::Event::ReceiptRead); this user's devices
    /// get [`Event::ConversationRead`](crate::Event::ConversationRead).
    pub async fn mark_read(&self, conversation_id: u64, seq: u64) -> Result<u64> {
        let request = Request::post(
            &format!("/v1/conversations/{conversation_id}/read"),
            json!({"seq": seq}),
        );
        let marker: ReadMarker = self.call_json(request).await?;
        Ok(marker.read_seq)
    }

    /// `POST /v1/conversations/{id}/typing`: tells the other members this
    /// user is typing ([`Event::Typing`](crate::Event::Typing); not stored).
    /// Call it every few seconds while the user types, not per keystroke.
    /// Never retried: a late indicator is worse than none.
    pub async fn typing(&self, conversation_id: u64) -> Result<()> {
        let request = Request::post_empty(format!("/v1/conversations/{conversation_id}/typing"))
            .retry(Retry::Never);
        self.call(request).await.map(drop)
    }

    /// `GET /v1/friends`: this user's friends, with presence.
    pub async fn friends(&self) -> Result<Vec<Friend>> {
        let list: FriendList = self.call_json(Request::get("/v1/friends")).await?;
        Ok(list.friends)
    }

    /// `GET /v1/friends/online`: the friends online now.
    pub async fn online_friends(&self) -> Result<Vec<Friend>> {
        let list: FriendList = self.call_json(Request::get("/v1/friends/online")).await?;
        Ok(list.friends)
    }

    /// `DELETE /v1/friends/{user_id}`: ends a friendship; both sides get
    /// [`Event::FriendRemoved`](crate::Event::FriendRemoved). `not_found` if
    /// the two are not friends.
    pub async fn remove_friend(&self, user_id: u64) -> Result<()> {
        let request =
            Request::new(Method::DELETE, format!("/v1/friends/{user_id}"), None).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `GET /v1/friends/requests?direction=incoming`: pending requests other
    /// users sent to this one (to accept or reject), newest first.
    pub async fn incoming_friend_requests(&self) -> Result<Vec<FriendRequest>> {
        self.friend_requests("incoming").await
    }

    /// `GET /v1/friends/requests?direction=outgoing`: pending requests this
    /// user sent (to cancel), newest first.
    pub async fn outgoing_friend_requests(&self) -> Result<Vec<FriendRequest>> {
        self.friend_requests("outgoing").await
    }

    async fn friend_requests(&self, direction: &str) -> Result<Vec<FriendRequest>> {
        let request = Request::get("/v1/friends/requests").query("direction", direction.to_owned());
        let list: FriendRequestList = self.call_json(request).await?;
        Ok(list.requests)
    }

    /// `POST /v1/friends/requests`: asks `user_id` to be friends, with an
    /// optional note (at most 200 characters).
    ///
    /// Usually answers the new request, `Pending`. If `user_id` had already
    /// asked this user, the server accepts *their* request instead and
    /// answers it (`from` is `user_id`) with status `Accepted`: the two are
    /// friends now.
    ///
    /// Errors: `not_found` (no such user, or one who blocks this user),
    /// `forbidden` (this user blocks them), `conflict` (already friends, or a
    /// request already pending). Not retried once the request may have
    /// reached the server, since a repeat would answer `conflict`; see
    /// [`outgoing_friend_requests`](Self::outgoing_friend_requests) to find
    /// out.
    pub async fn send_friend_request(
        &self,
        user_id: u64,
        note: Option<&str>,
    ) -> Result<FriendRequest> {
        let request = Request::post(
            "/v1/friends/requests",
            json!({"user_id": user_id, "note": note}),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `POST /v1/friends/requests/{id}/accept` (the recipient): the two
    /// become friends. Answers the accepted request. `conflict` if the request
    /// is no longer pending.
    pub async fn accept_friend_request(&self, request_id: u64) -> Result<FriendRequest> {
        self.decide_friend_request(request_id, "accept").await
    }

    /// `POST /v1/friends/requests/{id}/reject` (the recipient). Answers the
    /// rejected request.
    pub async fn reject_friend_request(&self, request_id: u64) -> Result<FriendRequest> {
        self.decide_friend_request(request_id, "reject").await
    }

    /// `POST /v1/friends/requests/{id}/cancel` (the sender). Answers the
    /// cancelled request.
    pub async fn cancel_friend_request(&self, request_id: u64) -> Result<FriendRequest> {
        self.decide_friend_request(request_id, "cancel").await
    }

    /// A repeat of a decision answers `conflict` ("the request is accepted"),
    /// which cannot tell our own lost success from someone else's decision:
    /// so no repeat once the request may have arrived.
    async fn decide_friend_request(&self, id: u64, decision: &str) -> Result<FriendRequest> {
        let request = Request::post_empty(format!("/v1/friends/requests/{id}/{decision}"))
            .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `GET /v1/blocks`: the users this user blocks.
    pub async fn blocks(&self) -> Result<Vec<u64>> {
        let list: BlockList = self.call_json(Request::get("/v1/blocks")).await?;
        Ok(list.user_ids)
    }

    /// `POST /v1/blocks`: blocks `user_id`. They can no longer message this
    /// user, send it friend requests or see its presence, and a friendship
    /// ends. Only this user's devices are told
    /// ([`Event::BlockUpdated`](crate::Event::BlockUpdated)); the blocked user
    /// just sees `not_found` from then on.
    pub async fn block(&self, user_id: u64) -> Result<()> {
        let request = Request::post("/v1/blocks", json!({"user_id": user_id}));
        self.call(request).await.map(drop)
    }

    /// `DELETE /v1/blocks/{user_id}`. `not_found` if not blocked.
    pub async fn unblock(&self, user_id: u64) -> Result<()> {
        let request =
            Request::new(Method::DELETE, format!("/v1/blocks/{user_id}"), None).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `GET /v1/presence?users=`: the presence of those of `user_ids` who are
    /// this user's friends (and of this user); the others are left out, since
    /// presence is for friends only. Asks in batches of
    /// [`MAX_PRESENCE_BATCH`]; no request at all for an empty list.
    ///
    /// Changes arrive afterwards as [`Event::Presence`](crate::Event::Presence).
    pub async fn presence(&self, user_ids: &[u64]) -> Result<Vec<Presence>> {
        let mut out = Vec::with_capacity(user_ids.len());
        for batch in user_ids.chunks(MAX_PRESENCE_BATCH) {
            let users = batch
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let request = Request::get("/v1/presence").query("users", users);
            let list: PresenceList = self.call_json(request).await?;
            out.extend(list.presence);
        }
        Ok(out)
    }

    /// `POST /v1/groups`: creates a group owned by this user, with `members`
    /// added (this user need not be listed). Its timeline opens with a
    /// `created` system message.
    ///
    /// Not retried once the request may have reached the server: a repeat
    /// would create a second group. After such an error, look in
    /// [`groups`](Self::groups) before trying again.
    pub async fn create_group(&self, name: &str, members: &[u64]) -> Result<Group> {
        let request = Request::post("/v1/groups", json!({"name": name, "members": members}))
            .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `GET /v1/groups`: the groups this user is a member of.
    pub async fn groups(&self) -> Result<Vec<Group>> {
        let list: GroupList = self.call_json(Request::get("/v1/groups")).await?;
        Ok(list.groups)
    }

    /// `GET /v1/groups/{id}`: one group with its members (members only;
    /// others get `not_found`).
    pub async fn group(&self, group_id: u64) -> Result<Group> {
        self.call_json(Request::get(format!("/v1/groups/{group_id}")))
            .await
    }

    /// `PATCH /v1/groups/{id}` (owner or admin): renames the group. Not
    /// retried once it may have arrived: every rename posts a system message,
    /// even to the same name.
    pub async fn rename_group(&self, group_id: u64, name: &str) -> Result<Group> {
        let request = Request::new(
            Method::PATCH,
            format!("/v1/groups/{group_id}"),
            Some(json!({"name": name})),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
    }

    /// `DELETE /v1/groups/{id}` (owner): dissolves the group. Every member
    /// gets a `dissolved` system message, then nobody is a member.
    pub async fn dissolve_group(&self, group_id: u64) -> Result<()> {
        let request =
            Request::new(Method::DELETE, format!("/v1/groups/{group_id}"), None).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `POST /v1/groups/{id}/members` (owner or admin): adds users (those
    /// already in are skipped; at most 500 at once). New members see the
    /// timeline from their addition on. Answers the group.
    pub async fn add_group_members(&self, group_id: u64, user_ids: &[u64]) -> Result<Group> {
        let request = Request::post(
            &format!("/v1/groups/{group_id}/members"),
            json!({"user_ids": user_ids}),
        );
        self.call_json(request).await
    }

    /// `GET /v1/groups/invitations`: pending invitations to this user,
    /// newest first.
    pub async fn group_invitations(&self) -> Result<Vec<GroupInvitation>> {
        let list: InvitationList = self
            .call_json(Request::get("/v1/groups/invitations"))
            .await?;
        Ok(list.invitations)
    }

    /// `POST /v1/groups/invitations/{id}/accept`: joins the group; its
    /// timeline is visible from now on.
    pub async fn accept_group_invitation(&self, invitation_id: u64) -> Result<GroupInvitation> {
        self.answer_group_invitation(invitation_id, "accept").await
    }

    /// `POST /v1/groups/invitations/{id}/decline`.
    pub async fn decline_group_invitation(&self, invitation_id: u64) -> Result<GroupInvitation> {
        self.answer_group_invitation(invitation_id, "decline").await
    }

    async fn answer_group_invitation(
        &self,
        invitation_id: u64,
        answer: &str,
    ) -> Result<GroupInvitation> {
        let request =
            Request::post_empty(format!("/v1/groups/invitations/{invitation_id}/{answer}"));
        self.call_json(request).await
    }

    /// `DELETE /v1/groups/{id}/members/{user_id}`: the owner removes anyone,
    /// an admin removes plain members; removing oneself is
    /// [`leave_group`](Self::leave_group).
    pub async fn remove_group_member(&self, group_id: u64, user_id: u64) -> Result<()> {
        let request = Request::new(
            Method::DELETE,
            format!("/v1/groups/{group_id}/members/{user_id}"),
            None,
        )
        .done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `PUT /v1/groups/{id}/members/{user_id}/role` (owner): makes a member
    /// an [`Admin`](GroupRole::Admin) or a plain
    /// [`Member`](GroupRole::Member) again. Ownership moves only with
    /// [`transfer_group`](Self::transfer_group). Answers the group.
    pub async fn set_group_role(
        &self,
        group_id: u64,
        user_id: u64,
        role: GroupRole,
    ) -> Result<Group> {
        let role = match role {
            GroupRole::Admin => "admin",
            GroupRole::Member => "member",
            other => {
                return Err(SdkError::InvalidInput {
                    what: "group role",
                    reason: format!("{other:?}: expected Admin or Member (use transfer_group)"),
                })
            }
        };
        let request = Request::new(
            Method::PUT,
            format!("/v1/groups/{group_id}/members/{user_id}/role"),
            Some(json!({"role": role})),
        );
        self.call_json(request).await
    }

    /// `POST /v1/groups/{id}/leave`. The owner must
    /// [`transfer_group`](Self::transfer_group) first (`conflict`), unless it
    /// is the last member: then the group is dissolved.
    pub async fn leave_group(&self, group_id: u64) -> Result<()> {
        let request = Request::post_empty(format!("/v1/groups/{group_id}/leave")).done_if_gone();
        self.call(request).await.map(drop)
    }

    /// `POST /v1/groups/{id}/transfer` (owner): makes member `user_id` the
    /// owner; this user becomes an admin. Answers the group. Not retried once
    /// it may have arrived: a repeat by the former owner answers `forbidden`.
    pub async fn transfer_group(&self, group_id: u64, user_id: u64) -> Result<Group> {
        let request = Request::post(
            &format!("/v1/groups/{group_id}/transfer"),
            json!({"user_id": user_id}),
        )
        .retry(Retry::IfNotSent);
        self.call_json(request).await
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

/// The HTTP transport: base URL, connection pool, retry policy.
struct Http {
    client: reqwest::Client,
    base: String,
    retry: RetryPolicy,
}

impl Http {
    /// Sends once; a non-2xx answer becomes [`SdkError::Api`].
    async fn execute(&self, request: &Request, bearer: Option<&str>) -> Result<Bytes> {
        let url = format!("{}{}", self.base, request.path);
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
        assert_eq!(http.base, "http://127.0.0.1:8080");
        Ok(())
    }
}
