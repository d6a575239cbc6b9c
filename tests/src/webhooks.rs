//! A webhook receiver on loopback: records what chatd POSTs, can fail the
//! first requests (retries) or hold every request unanswered (a slow
//! receiver, so a node holds its leases), and checks signatures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Answers `POST /hook`.
#[derive(Clone)]
pub struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// Answer 500 to this many requests first.
    pub fail_first: Arc<Mutex<usize>>,
    /// Requests that arrived, answered or not.
    arrived: Arc<AtomicUsize>,
    /// While true, requests wait unanswered.
    held: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            got: Arc::default(),
            fail_first: Arc::default(),
            arrived: Arc::default(),
            held: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl Receiver {
    /// Serves on `addr` (port 0: a free one) until the test ends.
    pub async fn start(&self, addr: &str) -> Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let me = me.clone();
                async move {
                    me.arrived.fetch_add(1, Ordering::SeqCst);
                    let mut held = me.held.subscribe();
                    // A closed channel can't be: the sender lives in `me`.
                    let _ = held.wait_for(|held| !*held).await;
                    {
                        let mut fail = me.fail_first.lock().unwrap_or_else(|e| e.into_inner());
                        if *fail > 0 {
                            *fail -= 1;
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        }
                    }
                    me.got
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((headers, body));
                    StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(local)
    }

    /// Holds every request unanswered (`true`) or answers them (`false`,
    /// including those held so far).
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// Requests that arrived so far, answered or not.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    /// What was answered 200: headers and parsed body, in arrival order.
    pub fn events(&self) -> Vec<(HeaderMap, Value)> {
        self.got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_str(b).unwrap_or(Value::Null)))
            .collect()
    }

    /// The same, with raw bodies.
    pub fn raw(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `X-Mqchat-Delivery` ids answered 200, in arrival order.
    pub fn delivery_ids(&self) -> Vec<u64> {
        self.raw()
            .iter()
            .filter_map(|(h, _)| h.get("x-mqchat-delivery")?.to_str().ok()?.parse().ok())
            .collect()
    }
}

/// True when `headers` carry a valid signature of `body` with `secret`.
pub fn verify(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let ts = headers
        .get("x-mqchat-timestamp")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sig = headers
        .get("x-mqchat-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{ts}.{body}").as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sig == format!("v1={expected}")
}
