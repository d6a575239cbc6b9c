//! The PROXY protocol (HAProxy's; v1 text and v2 binary) from trusted
//! balancers. Behind a balancer every connection comes from the
//! balancer's address, so whatever is keyed by client address (connection
//! caps, rate limits, logs) would lump every client together. A balancer
//! whose address is in [`TrustedProxies`] must open each connection with a
//! PROXY header, and the client address it carries stands in for the peer
//! address from then on. Nobody else is believed: from an untrusted peer
//! the same bytes are just a bad request (an `X-Forwarded-For` header is
//! never read either, since any client can set it).
//!
//! The header is parsed by the `proxy-header` crate; what is read here is
//! bounded in size ([`MAX_HEADER`]) and time ([`HEADER_TIMEOUT`]).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use proxy_header::{ParseConfig, ProxyHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tracing::debug;

/// Time a trusted peer has to send its whole PROXY header, from the accept.
/// A balancer sends it at once, with the connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// Bytes a PROXY header may take. v1 is at most 107; v2 is 16 plus its
/// addresses (at most 216) and extensions (TLVs: a balancer's own, a TLS
/// summary), which a balancer keeps far below this.
pub const MAX_HEADER: usize = 4096;

/// Addresses (CIDR ranges) of the balancers whose PROXY headers are
/// believed. Empty: none, every peer address is the client's.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// Why a connection from a trusted peer was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no complete PROXY header within {HEADER_TIMEOUT:?}")]
    Timeout,
    #[error("closed before its PROXY header ended")]
    Closed,
    #[error("not a PROXY header, or a malformed one")]
    Malformed,
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// `CIDR[,CIDR...]`; a bare address is a range of one. Empty: none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("`{part}` is not an address or a CIDR range (like 10.0.0.0/8)")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|nets| TrustedProxies(nets.into()))
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Is `ip` a trusted balancer's? (An IPv4 address seen on an IPv6
    /// socket, `::ffff:a.b.c.d`, is matched as IPv4.)
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The stream to serve, and the client's address, for a connection
    /// accepted from `peer`. From an untrusted peer: the stream as it is,
    /// and `peer`. From a trusted one: the stream past its PROXY header,
    /// and the source address the header carries (`peer` itself when the
    /// header says the connection is the balancer's own, as its health
    /// checks are: v2 LOCAL, v1 UNKNOWN). A trusted peer that sends no
    /// header, a malformed one, or not all of it within
    /// [`HEADER_TIMEOUT`], is refused: the caller closes the connection.
    pub async fn resolve<S>(
        &self,
        mut stream: S,
        peer: SocketAddr,
    ) -> Result<(Proxied<S>, SocketAddr), ProxyError>
    where
        S: AsyncRead + Unpin,
    {
        if !self.trusts(peer.ip()) {
            return Ok((Proxied::direct(stream), peer));
        }
        let (early, client) = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream))
            .await
            .map_err(|_| ProxyError::Timeout)??;
        let mut client = client.unwrap_or(peer);
        // An IPv4 client a balancer reports as IPv6 (`::ffff:a.b.c.d`) is
        // the same client, with the same budgets, as when reported as IPv4.
        client.set_ip(client.ip().to_canonical());
        debug!(proxy = %peer, %client, "PROXY header");
        Ok((
            Proxied {
                early,
                at: 0,
                inner: stream,
            },
            client,
        ))
    }
}

/// Reads a PROXY header from the start of `stream`: the bytes read past it
/// (the client's first, to be served), and the source address it carries
/// (`None`: the balancer's own connection).
async fn read_header<S>(stream: &mut S) -> Result<(Vec<u8>, Option<SocketAddr>), ProxyError>
where
    S: AsyncRead + Unpin,
{
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    };
    // Most headers fit the first read (v2 from HAProxy: 28 bytes for IPv4);
    // the buffer grows, up to the bound, only for long ones.
    let mut buf = vec![0; 256];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_HEADER {
                return Err(ProxyError::TooLong);
            }
            buf.resize((buf.len() * 2).min(MAX_HEADER), 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        filled += n;
        match ProxyHeader::parse(&buf[..filled], config) {
            Ok((header, used)) => {
                let client = header.proxied_address().map(|a| a.source);
                buf.truncate(filled);
                buf.drain(..used);
                buf.shrink_to_fit();
                return Ok((buf, client));
            }
            Err(proxy_header::Error::BufferTooShort) => continue,
            Err(_) => return Err(ProxyError::Malformed),
        }
    }
}

/// A connection's stream after its PROXY header: first the bytes that were
/// read with the header, then the stream's own. Writes go straight through.
#[derive(Debug)]
pub struct Proxied<S> {
    early: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Proxied<S> {
    /// A stream with no PROXY header (an untrusted peer's).
    pub fn direct(inner: S) -> Self {
        Proxied {
            early: Vec::new(),
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Proxied<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.early.len() {
            let n = buf.remaining().min(this.early.len() - this.at);
            buf.put_slice(&this.early[this.at..this.at + n]);
            this.at += n;
            if this.at == this.early.len() {
                // Served: the connection keeps no buffer for its life.
                this.early = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Proxied<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn trusted(s: &str) -> TrustedProxies {
        match s.parse() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn ranges_parse_and_match() {
        let t = trusted(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8");
        assert!(t.trusts([10, 1, 2, 3].into()));
        assert!(t.trusts([192, 168, 1, 7].into()));
        assert!(!t.trusts([192, 168, 1, 8].into()));
        assert!(t.trusts("fd12::1".parse().unwrap_or(IpAddr::from([0; 4]))));
        assert!(
            t.trusts("::ffff:10.9.9.9".parse().unwrap_or(IpAddr::from([0; 4]))),
            "IPv4-mapped"
        );
        assert!(trusted("").is_empty());
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("example.com".parse::<TrustedProxies>().is_err());
    }

    #[tokio::test]
    async fn the_header_is_consumed_and_what_follows_is_served() -> std::io::Result<()> {
        let t = trusted("127.0.0.1");
        let peer: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 4321 80\r\nGET / HTTP/1.1\r\n")
            .await?;
        let (mut stream, addr) = t
            .resolve(server, peer)
            .await
            .map_err(std::io::Error::other)?;
        assert_eq!(addr, SocketAddr::from(([203, 0, 113, 9], 4321)));
        drop(client);
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await?;
        assert_eq!(rest, "GET / HTTP/1.1\r\n");

        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n").await?;
        assert!(matches!(
            t.resolve(server, peer).await,
            Err(ProxyError::Malformed)
        ));
        Ok(())
    }
}
