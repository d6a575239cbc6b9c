//! Client publishes to the open subtrees (`users/{id}/up/...`): requests
//! for the service, carried over MQTT for devices on weak links.
//!
//! They never reach other clients. Each connection hands them,
//! in order, to one worker task that gives them to the [`Uplink`] handler,
//! publishes each answer and only then acknowledges the PUBLISH — so a
//! PUBACK means the request was handled (for a send: committed), and PUBACKs
//! stay in PUBLISH order as MQTT requires. The worker takes the next request
//! in as soon as the handler has taken the previous one (for a send: queued
//! it for the store, which keeps that order), so up to
//! [`crate::Settings::uplink_queue`] requests of a connection are in flight
//! at once instead of one round trip to the store each. This module is the
//! contract with chatsvc; the worker is the connection's (`conn::uplink`).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::auth::Principal;

/// One uplink request.
#[derive(Debug, Clone)]
pub struct UplinkRequest {
    pub principal: Principal,
    /// The topic below `users/{id}/`, e.g. `up/messages`.
    pub subtopic: String,
    pub payload: Bytes,
}

/// The reply to an uplink request, still to come.
pub type PendingReply = Pin<Box<dyn Future<Output = Bytes> + Send + 'static>>;

/// Handles uplink requests; implemented by chatsvc.
pub trait Uplink: Send + Sync + 'static {
    /// Takes a request in. Resolves once the request has its place (later
    /// requests of the connection are handled after it), with the reply
    /// payload to come, published back to the client.
    fn handle(
        &self,
        request: UplinkRequest,
    ) -> Pin<Box<dyn Future<Output = PendingReply> + Send + '_>>;
}
