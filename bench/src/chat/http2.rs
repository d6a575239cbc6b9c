//! One HTTP/2 connection per sender (cleartext, prior knowledge), on
//! hyper's client connection API: each send is a stream of its own, so a
//! sender keeps a window of sends in flight on one socket, and the two
//! sides write many requests and answers per system call.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A sender's own HTTP/2 connection to chatd's HTTP listener.
#[derive(Clone)]
pub struct Connection {
    tx: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Connection> {
        let tcp = super::http1::connect(addr).await?;
        let (tx, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .context("HTTP/2 handshake (does chatd serve h2c?)")?;
        // Ends when every `tx` clone is dropped or the server closes.
        tokio::spawn(conn);
        Ok(Connection { tx })
    }

    /// Whether the connection is gone (every later send would fail).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// `POST uri` (absolute: HTTP/2 sends its scheme and authority) with a
    /// JSON body and a bearer token, as a stream of its own; resolves to the
    /// status and the whole answer. Any number may be in flight at once, up
    /// to the server's limit of concurrent streams; HTTP/2 does not order
    /// them, so sends whose order matters must wait for each other.
    pub fn post_json(
        &self,
        uri: &Uri,
        auth: &str,
        body: String,
    ) -> impl Future<Output = Result<(u16, Bytes)>> + Send + 'static {
        let mut tx = self.tx.clone();
        let request = Request::post(uri.clone())
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        async move {
            tx.ready().await?;
            let answer = tx.send_request(request?).await?;
            let status = answer.status().as_u16();
            let body = answer.into_body().collect().await?.to_bytes();
            Ok((status, body))
        }
    }
}
