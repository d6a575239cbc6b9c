//! Domain: accounts, tokens, messages and sync. Rules and invariants live
//! here; no HTTP (that is `api`) and no SQL (that is `store`).

pub mod accounts;
pub mod events;
pub mod expiry;
pub mod files;
pub mod groups;
pub mod limits;
pub mod messages;
pub mod model;
pub(crate) mod names;
pub(crate) mod outbox;
pub mod pins;
pub mod presence;
pub mod reactions;
pub mod replies;
pub(crate) mod sends;
pub mod services;
pub mod settings;
pub mod social;
pub mod thumbnail;
pub mod tokens;
pub mod webhooks;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use crate::store::{Store, StoreError};
pub use tokens::Tokens;

/// Errors of the domain, each an answer a client can act on, plus the two
/// fault kinds (`Unavailable`, `Internal`) whose details stay in the log.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
    #[error("username must be 3-32 characters of a-z, 0-9, '_', '.', '-'")]
    InvalidUsername,
    #[error("password must be 8-256 characters")]
    WeakPassword,
    #[error("username is taken")]
    UsernameTaken,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("invalid token")]
    InvalidToken,
    #[error("token expired")]
    TokenExpired,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// A reaction that is not one Unicode emoji.
    #[error("not an emoji: a reaction is one emoji from the Unicode list, at most 64 bytes")]
    InvalidEmoji,
    #[error("the recall window has passed")]
    RecallWindowPassed,
    /// A reply whose target is not a message of the conversation the
    /// sender can see.
    #[error("{0}")]
    InvalidReply(String),
    /// A mention of someone who is not a member, or a malformed list.
    #[error("{0}")]
    InvalidMention(String),
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    /// An upload quota is used up: the total one (`retry_after` is `None`:
    /// only deleting or expiring uploads frees room) or the daily one.
    #[error("upload quota of {limit} bytes used up")]
    UploadQuota {
        limit: u64,
        retry_after: Option<std::time::Duration>,
    },
    #[error("too many requests; retry in {retry_after:?}")]
    RateLimited { retry_after: std::time::Duration },
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// A fault: a bug, a broken invariant, a store error a retry won't
    /// cure. `context` says what was being done; `source`, when there is
    /// one, is kept whole so the log shows its chain ([`ErrorChain`]).
    #[error("internal: {context}{}", source_suffix(.source.as_deref()))]
    Internal {
        context: Cow<'static, str>,
        #[source]
        source: Option<BoxError>,
    },
}

/// Any error, owned and sendable: the source of a [`DomainError::Internal`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

fn source_suffix(source: Option<&(dyn std::error::Error + Send + Sync + 'static)>) -> String {
    source.map(|s| format!(": {s}")).unwrap_or_default()
}

impl DomainError {
    /// A fault with nothing underneath it (an invariant broken).
    pub fn internal(context: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// A fault caused by `source` while doing `context`.
    pub fn internal_from(
        context: impl Into<Cow<'static, str>>,
        source: impl Into<BoxError>,
    ) -> Self {
        DomainError::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => DomainError::NotFound(what),
            e if e.is_unavailable() => DomainError::Unavailable(e),
            e => DomainError::internal_from("store", e),
        }
    }
}

/// Displays an error and each of its sources, `outer: inner: innermost`,
/// for the log. Errors here often repeat their source in their own text
/// (`sqlite: {0}` over the rusqlite error), so a source whose text the
/// line already ends with is not written again.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = self.0.to_string();
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = s.source();
        }
        f.write_str(&line)
    }
}

/// Where events go after commit. chatd plugs in the embedded broker; a
/// scaled-out deployment plugs in a bus.
pub trait Downlink: Send + Sync + 'static {
    /// Pushes one serialized event to `users/{user_id}/{subtopic}`. Called
    /// on the store's writer thread right after the commit, in commit order,
    /// so it must hand off quickly. Returns false when the user had no live
    /// connection (nothing was sent; sync will deliver stored events).
    fn push(&self, user_id: u64, subtopic: &str, event: Bytes) -> bool;
    /// Pushes a batch in order; returns how many reached a live connection.
    /// Same calling context as [`Downlink::push`].
    fn push_batch(&self, items: &[(u64, &'static str, Bytes)]) -> usize {
        items
            .iter()
            .filter(|(user, subtopic, event)| self.push(*user, subtopic, event.clone()))
            .count()
    }
    /// Ends a user's live connections (of one login session, when given).
    fn end_sessions(&self, user_id: u64, session_id: Option<u64>) -> usize;
    /// Does the user have a live connection?
    fn is_online(&self, user_id: u64) -> bool;
}

/// Who may open a direct conversation with whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmPolicy {
    /// Anyone may message anyone who has not blocked them.
    Open,
    /// Only friends may message each other.
    Friends,
}

/// The service's rules and limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_text_chars: usize,
    pub max_page: usize,
    pub dm_policy: DmPolicy,
    pub max_group_size: usize,
    /// Most different emoji on one message.
    pub max_reactions_per_message: usize,
    /// Most pinned messages in one conversation.
    pub max_pins_per_conversation: usize,
    /// Most conversations one user may pin to the top of their list.
    pub max_pinned_conversations: usize,
    pub friend_request_ttl: std::time::Duration,
    pub recall_window: std::time::Duration,
    /// How long a user must stay offline before friends are told.
    pub presence_debounce: std::time::Duration,
    /// How long a node holds a webhook delivery it attempts (shared store).
    pub webhook_lease: std::time::Duration,
    pub rates: limits::RateConfig,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Bytes a user may upload in 24 hours (0: no quota).
    pub upload_quota_daily_bytes: u64,
    /// Bytes of uploads a user may have stored (0: no quota).
    pub upload_quota_total_bytes: u64,
    /// Memory all thumbnail decodes together may use, bytes.
    pub thumbnail_memory_bytes: u64,
    /// Searches that may run at once; more wait their turn (at least 1).
    pub search_concurrency: usize,
    /// How long messages are kept (`--retention-days`); `None`: for ever.
    pub retention: Option<std::time::Duration>,
    /// Most messages one sweep pass removes (`--sweep-batch`).
    pub sweep_batch: usize,
}

/// Half the cores, at least one: searches may not take every core from
/// sends (see [`Chat::search`]).
pub fn default_search_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024,
            max_text_chars: 4000,
            max_page: 500,
            dm_policy: DmPolicy::Open,
            max_group_size: 2000,
            max_reactions_per_message: 20,
            max_pins_per_conversation: 50,
            max_pinned_conversations: 20,
            friend_request_ttl: std::time::Duration::from_secs(30 * 86_400),
            recall_window: std::time::Duration::from_secs(120),
            presence_debounce: std::time::Duration::from_secs(5),
            webhook_lease: std::time::Duration::from_secs(60),
            rates: limits::RateConfig::default(),
            max_upload_bytes: 20 * 1024 * 1024,
            upload_quota_daily_bytes: 1024 * 1024 * 1024,
            upload_quota_total_bytes: 10 * 1024 * 1024 * 1024,
            thumbnail_memory_bytes: 192 * 1024 * 1024,
            search_concurrency: default_search_concurrency(),
            retention: None,
            sweep_batch: expiry::DEFAULT_SWEEP_BATCH,
        }
    }
}

/// Full shared rate-limit buckets deleted per pass at most: a pass never
/// holds a long statement, and a minute's new keys at any plausible rate
/// are gone within a few passes.
const FORGET_BUCKETS_PER_PASS: usize = 10_000;

/// The chat service: everything the API layer calls.
#[derive(Clone)]
pub struct Chat {
    pub(crate) store: Store,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) downlink: Arc<dyn Downlink>,
    pub(crate) limits: Limits,
    pub(crate) presence: Arc<presence::Tracker>,
    pub(crate) rates: Arc<limits::RateLimits>,
    /// Wakes the webhook worker early.
    pub(crate) webhook_wake: Arc<tokio::sync::Notify>,
    /// Where attachments are kept (`files/` in the data dir).
    pub(crate) files_dir: Option<std::path::PathBuf>,
    /// Per-service-key rate limiters.
    pub(crate) key_limits: Arc<services::KeyLimits>,
    /// Uploads in flight, counted against the quotas.
    pub(crate) uploads: Arc<files::Uploads>,
    /// The thumbnail decoders' memory budget.
    pub(crate) decoders: Arc<thumbnail::Decoders>,
    /// Turns for searches (`Limits::search_concurrency`).
    pub(crate) searches: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("store", &self.store).finish()
    }
}

impl Chat {
    pub fn new(
        store: Store,
        tokens: Arc<Tokens>,
        downlink: Arc<dyn Downlink>,
        limits: Limits,
    ) -> Self {
        let rates = Arc::new(limits::RateLimits::for_store(&limits.rates, &store));
        let decoders = Arc::new(thumbnail::Decoders::new(limits.thumbnail_memory_bytes));
        let searches = Arc::new(tokio::sync::Semaphore::new(
            limits.search_concurrency.max(1),
        ));
        Chat {
            store,
            tokens,
            downlink,
            limits,
            presence: Arc::new(presence::Tracker::default()),
            rates,
            webhook_wake: Arc::new(tokio::sync::Notify::new()),
            files_dir: None,
            key_limits: Arc::default(),
            uploads: Arc::default(),
            decoders,
            searches,
        }
    }

    /// Keeps attachments under `dir`.
    pub fn with_files_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.files_dir = Some(dir);
        self
    }

    /// Draws a state change reaching `recipients` users from `user`'s
    /// action budget (sends have their own).
    pub(crate) fn charge(&self, user: u64, recipients: usize) -> Result<(), DomainError> {
        self.rates.action(user, recipients)
    }

    /// [`Chat::charge`] for a change every member of a conversation gets.
    pub(crate) async fn charge_conversation(
        &self,
        user: u64,
        conversation_id: u64,
    ) -> Result<(), DomainError> {
        let members = self
            .store
            .read(move |c| crate::store::messages::member_count(c, conversation_id))
            .await?;
        self.charge(user, members)
    }

    /// Drops idle rate-limit state, in memory and (bounded) in a shared
    /// store; call periodically.
    pub async fn forget_idle_rate_limits(&self) {
        self.rates.forget_idle();
        if let Err(e) = self
            .store
            .forget_full_buckets(FORGET_BUCKETS_PER_PASS)
            .await
        {
            tracing::warn!(error = %e, "forgetting full rate-limit buckets");
        }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
