//! Rust client SDK for mqchat.
//!
//! mqchat clients send over HTTP (uplink) and receive over MQTT (downlink).
//! The push is only a notification; the server's store is the truth. This
//! crate hides that split behind two things:
//!
//! - [`Client`]: typed calls for every HTTP endpoint: messages (send, edit,
//!   recall, delete for me, search, read markers, typing), conversations,
//!   friends and friend requests, blocks, presence, groups. It keeps the
//!   session's tokens fresh (refreshing before expiry and once on a
//!   stale-token 401) and retries transient failures, but only where a repeat
//!   is harmless: sends carry a `client_msg_id` the server deduplicates, while
//!   e.g. [`Client::create_group`] is not sent again once it may have reached
//!   the server (the `client` module's docs list every call's class).
//! - [`EventStream`] from [`Client::connect`]: the user's inbox events
//!   (messages, edits, recalls, receipts, read markers, friend and block
//!   changes), **gap-free, duplicate-free and in cursor order**, across
//!   disconnects. It subscribes over MQTT, then reads whatever the push missed
//!   through `GET /v1/sync`, and reconnects with backoff on its own.
//!   Ephemeral presence and typing pushes come through the same stream, as
//!   they arrive, outside the cursor order.
//!
//! ```no_run
//! use mqchat_sdk::{Client, Event, Recipient, StreamOptions, Transport};
//!
//! # async fn example() -> Result<(), mqchat_sdk::SdkError> {
//! let base = "http://127.0.0.1:8080";
//! Client::register(base, "alice", "correct horse").await?;
//! let alice = Client::login(base, "alice", "correct horse").await?;
//!
//! let mut events = alice.connect(
//!     Transport::Tcp("127.0.0.1:1883".into()),
//!     StreamOptions::default(),
//! )?;
//! alice.send_text(Recipient::User(alice.user_id()), "note to self").await?;
//!
//! while let Some(event) = events.recv().await {
//!     if let Event::MessageCreated { cursor, message, .. } = event? {
//!         println!("#{cursor}: {}", message.text().unwrap_or_default());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Several servers (the nodes of a cluster): [`ClientBuilder::fallback`]
//! adds servers the HTTP calls move to when the one in use can't be
//! reached, and [`Client::connect_any`] streams from the first of several
//! MQTT endpoints, moving on when a connection is lost and syncing there,
//! so the stream stays gap-free across the move.
//!
//! # Layout
//!
//! - `client`: [`Client`], [`ClientBuilder`]: HTTP calls, the token session
//!   (single-flight refresh, because refresh tokens rotate), retries.
//! - `stream`: [`Client::connect`], [`EventStream`]: the driver task that owns
//!   the MQTT connection, syncs, reconnects; [`Transport`], [`StreamOptions`].
//! - [`sequencer`]: [`Sequencer`], the pure state machine that merges pushes
//!   and sync pages into cursor order. All the ordering logic lives here, so
//!   it is tested without a network.
//! - `event`: [`Event`] parsing, inbox and ephemeral; unknown event types
//!   pass through untyped.
//! - `model`: the other wire types ([`User`], [`Message`], [`Group`],
//!   [`FriendRequest`], ...).
//! - `reactions`: reactions, pins and conversation settings ([`Reaction`],
//!   [`Pin`], [`ConversationSettings`]) and their events.
//! - `backoff`: [`Backoff`] and [`RetryPolicy`].
//! - `error`: [`SdkError`], [`ErrorCode`].

mod backoff;
mod client;
mod error;
mod event;
mod model;
mod reactions;
pub mod sequencer;
mod stream;

pub use backoff::{Backoff, RetryPolicy};
pub use client::{
    new_client_msg_id, Client, ClientBuilder, MAX_BATCH_SENDS, MAX_CLIENT_MSG_ID_LEN,
    MAX_PRESENCE_BATCH, MAX_SEARCH_QUERY_LEN, MAX_SYNC_LIMIT,
};
pub use error::{ErrorCode, SdkError};
pub use event::{Event, NotAnObject};
pub use model::{
    AllMembers, Body, Conversation, ConversationKind, ForwardedFrom, Friend, FriendRequest,
    FriendRequestStatus, Group, GroupAddPolicy, GroupInvitation, GroupMember, GroupRef, GroupRole,
    HistoryPage, InvitationStatus, MentionAll, Mentions, Message, MessageKind, OutgoingMessage,
    Presence, Quote, Recipient, SyncPage, SystemEvent, SystemEventKind, User,
};
pub use reactions::{
    ConversationSettings, MessageReactions, MutedUntil, Pin, PinEvent, PinPolicy, Reaction,
    ReactionEvent, SettingsChange, SettingsEvent,
};
pub use sequencer::Sequencer;
pub use stream::{
    EventStream, StartFrom, StreamOptions, StreamState, Transport, MAX_DEVICE_ID_LEN,
};

/// `Result` with [`SdkError`].
pub type Result<T, E = SdkError> = std::result::Result<T, E>;
