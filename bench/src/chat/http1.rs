//! One HTTP/1.1 keep-alive connection per sender, on hyper's client
//! connection API: no pool, no URL parsing, no per-request client state.
//! The pooled reqwest client cost this tool ~50 µs of CPU per send on the
//! cores it shares with chatd; this costs about half of that.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A sender's own connection to chatd's HTTP listener.
pub struct Connection {
    tx: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Connection> {
        let tcp = connect(addr).await?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        // Ends when `tx` is dropped or the server closes the connection.
        tokio::spawn(conn);
        Ok(Connection {
            tx,
            host: addr.to_string(),
        })
    }

    /// `POST path` with a JSON body and a bearer token; the status and the
    /// whole answer.
    pub async fn post_json(
        &mut self,
        path: &str,
        auth: &str,
        body: String,
    ) -> Result<(u16, Bytes)> {
        self.tx.ready().await?;
        let request = Request::post(path)
            .header(HOST, &self.host)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let answer = self.tx.send_request(request).await?;
        let status = answer.status().as_u16();
        let body = answer.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A TCP connection to `addr` with Nagle's algorithm off (a request must
/// not wait for the answer to the one before).
pub(super) async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}
