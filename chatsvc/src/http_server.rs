//! Serves the HTTP router (HTTP/1.1, h2c with prior knowledge, WebSocket
//! upgrades) with the limits a server facing strangers needs, which
//! `axum::serve` can't set:
//! - a cap on concurrent connections per client address, checked at accept
//!   (the address a trusted balancer's PROXY header carries, see
//!   `mqchat_broker::proxy`);
//! - a header timeout: a request's head (and a new connection's first one)
//!   must arrive within it, however slowly it is dribbled;
//! - an idle timeout: a connection with no request in flight and nothing
//!   written for that long is closed gracefully;
//! - at most 64 KiB buffered per HTTP/1 connection (a request head beyond
//!   is refused);
//! - graceful shutdown: stop accepting, let requests in flight finish.
//!
//! Like Go's `ReadHeaderTimeout` and `IdleTimeout`. hyper's own header
//! timer also runs while a keep-alive connection waits for its next
//! request, which would make the two one, and nothing times out a
//! connection still in the auto builder's version sniffing; so the
//! connection's task watches both itself (`Watch`).

use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use mqchat_broker::limits::PerKey;
use mqchat_broker::proxy::{Proxied, TrustedProxies};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// How long a connection told to close may take to finish: the longest a
/// request may run.
const DRAIN: Duration = crate::api::REQUEST_TIMEOUT;

/// Bytes an HTTP/1 connection buffers from its client: bounds a request head
/// (bodies stream through in pieces of at most this).
const MAX_BUFFER: usize = 64 * 1024;

/// The limits [`serve`] enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Concurrent connections per client address (0: no cap).
    pub connections_per_address: usize,
    /// Balancers whose PROXY headers are believed.
    pub trusted_proxies: TrustedProxies,
}

/// Serves `app` on `listener` until `shutdown`, then waits for the
/// connections' requests in flight (upgraded WebSockets are the broker's).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let per_address = PerKey::<IpAddr>::new(limits.connections_per_address);
    let tasks = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = mqchat_broker::accept(&listener, "http") => match accepted {
                Some(v) => v,
                None => continue,
            },
        };
        let app = app.clone();
        let (limits, stop) = (limits.clone(), shutdown.clone());
        let per_address = per_address.clone();
        tasks.spawn(async move {
            // Behind a trusted balancer, the client's address is the one
            // its PROXY header carries (read here, off the accept loop).
            let (socket, client) =
                match Box::pin(limits.trusted_proxies.resolve(socket, peer)).await {
                    Ok(v) => v,
                    Err(e) => {
                        warn!(%peer, error = %e, "http connection from a trusted proxy refused");
                        return;
                    }
                };
            // Refused by closing at once: the cheapest answer, and the
            // socket is back to the system before it can be held.
            let Some(slot) = per_address.try_take(client.ip(), false) else {
                metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED_TOTAL).increment(1);
                debug!(peer = %client, "http connection refused: too many from this address");
                return;
            };
            serve_connection(socket, client, app, &limits, &stop).await;
            drop(slot);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// Serves one connection; `peer` is the client's address (as its PROXY
/// header says, behind a trusted balancer).
async fn serve_connection(
    socket: Proxied<TcpStream>,
    peer: SocketAddr,
    app: Router,
    limits: &Limits,
    shutdown: &CancellationToken,
) {
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched {
        inner: socket,
        watch: watch.clone(),
    });
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = watch.request_started(req.version() == hyper::Version::HTTP_2);
            let response = tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new));
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        })
    };
    let mut builder = Builder::new(TokioExecutor::new());
    // What an HTTP/1 connection may buffer: a request head larger than this
    // is refused (431). hyper's default, ~408 KB, held by a head that never
    // ends, is a lot to give every connection of a stranger.
    builder.http1().max_buf_size(MAX_BUFFER);
    // Extended CONNECT: WebSocket over HTTP/2 (RFC 8441), as axum::serve does.
    builder.http2().enable_connect_protocol();
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut closing: Option<Instant> = None;
    loop {
        let check = match closing {
            // A graceful close that does not end (a client that never
            // reads its last response) is cut once a request could no
            // longer be running.
            Some(since) => since + DRAIN,
            None => watch.next_check(limits),
        };
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    debug!(%peer, error = %e, "http connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = tokio::time::sleep_until(check) => {
                if closing.is_some() {
                    return;
                }
                match watch.expired(limits) {
                    Some(Expired::Header) => {
                        metrics::counter!(crate::metrics::HTTP_CONNECTIONS_TIMED_OUT_TOTAL, "phase" => crate::metrics::PHASE_HEADER).increment(1);
                        debug!(%peer, "http connection closed: no request head within the header timeout");
                        return;
                    }
                    Some(Expired::Idle) => {
                        metrics::counter!(crate::metrics::HTTP_CONNECTIONS_TIMED_OUT_TOTAL, "phase" => crate::metrics::PHASE_IDLE).increment(1);
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    None => {}
                }
            }
        }
    }
}

/// What a connection has been doing, in milliseconds since it was accepted:
/// written by its IO (reads, writes) and its service (requests).
struct Watch {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Accepted, a request started or ended, or bytes were written.
    last_active: AtomicU64,
    /// Since when a request head has been awaited: from the accept, and
    /// (HTTP/1) from the first byte after the connection went idle.
    /// `NONE` while no head is awaited.
    head_since: AtomicU64,
    /// HTTP/2: bytes between requests are frames (PING, SETTINGS), not a
    /// request head on its way.
    h2: AtomicBool,
}

const NONE: u64 = u64::MAX;

enum Expired {
    Header,
    Idle,
}

/// A request in flight; done when dropped.
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Watch {
    fn new() -> Self {
        Watch {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    fn touch(&self) {
        self.last_active.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>, h2: bool) -> InFlight {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && !self.h2.load(Ordering::Relaxed) {
            let _ = self.head_since.compare_exchange(
                NONE,
                self.now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// When the next limit could expire.
    fn next_check(&self, limits: &Limits) -> Instant {
        let head = self.head_since.load(Ordering::Relaxed);
        if head != NONE {
            return self.at(head) + limits.header_timeout;
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            return self.at(self.last_active.load(Ordering::Relaxed)) + limits.idle_timeout;
        }
        Instant::now() + limits.idle_timeout
    }

    fn expired(&self, limits: &Limits) -> Option<Expired> {
        let now = Instant::now();
        let head = self.head_since.load(Ordering::Relaxed);
        if head != NONE && self.at(head) + limits.header_timeout <= now {
            return Some(Expired::Header);
        }
        let idle = head == NONE
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.at(self.last_active.load(Ordering::Relaxed)) + limits.idle_timeout <= now;
        idle.then_some(Expired::Idle)
    }
}

/// A connection's socket, reporting reads and writes to its [`Watch`].
struct Watched<I> {
    inner: I,
    watch: Arc<Watch>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_some();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
