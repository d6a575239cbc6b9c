//! The MQTT wire codec, per protocol level, on top of `rumqttd::protocol`.

use bytes::BytesMut;
use rumqttd::protocol::{self, v4, v5, Packet, Protocol};

/// Which MQTT version a connection speaks; fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V311,
    V5,
}

/// What the first bytes of a connection say about its protocol.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// Not enough bytes yet.
    Incomplete,
    /// A CONNECT for this version.
    Connect(Version),
    /// A CONNECT with a protocol level we do not serve (e.g. 3 = MQTT 3.1).
    UnsupportedLevel(u8),
    /// Not a CONNECT, or not MQTT at all.
    NotConnect,
}

/// Looks at the first frame without consuming it. The protocol level sits
/// after the fixed header and the length-prefixed protocol name.
pub(crate) fn sniff(buf: &[u8], max_packet: usize) -> Sniff {
    match buf.first() {
        None => return Sniff::Incomplete,
        Some(b) if b >> 4 != 1 => return Sniff::NotConnect,
        Some(_) => {}
    }
    let header = match v4::check(buf.iter(), max_packet) {
        Ok(h) => h,
        Err(protocol::Error::InsufficientBytes(_)) => return Sniff::Incomplete,
        Err(_) => return Sniff::NotConnect,
    };
    let at = header.fixed_header_len;
    let Some(name_len) = buf
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return Sniff::NotConnect;
    };
    match buf.get(at + 2 + name_len) {
        Some(4) => Sniff::Connect(Version::V311),
        Some(5) => Sniff::Connect(Version::V5),
        Some(&level) => Sniff::UnsupportedLevel(level),
        None => Sniff::NotConnect,
    }
}

/// QoS and packet id of a PUBLISH frame at the start of `buf`, read from the
/// raw bytes (the decoded `Publish` keeps them private). `None` if the frame
/// at the start is not a complete PUBLISH.
pub(crate) fn peek_publish(buf: &[u8], max_packet: usize) -> Option<(u8, u16)> {
    let header = v4::check(buf.iter(), max_packet).ok()?;
    if buf[0] >> 4 != 3 {
        return None;
    }
    let qos = (buf[0] >> 1) & 0b11;
    if qos == 0 {
        return Some((0, 0));
    }
    let at = header.fixed_header_len;
    let topic_len = buf
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)?;
    let p = at + 2 + topic_len;
    let pkid = buf
        .get(p..p + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))?;
    Some((qos, pkid))
}

impl Version {
    pub(crate) fn read(self, buf: &mut BytesMut, max: usize) -> Result<Packet, protocol::Error> {
        match self {
            Version::V311 => v4::V4.read_mut(buf, max),
            Version::V5 => v5::V5.read_mut(buf, max),
        }
    }

    pub(crate) fn write(
        self,
        packet: Packet,
        out: &mut BytesMut,
    ) -> Result<usize, protocol::Error> {
        match self {
            Version::V311 => v4::V4.write(packet, out),
            Version::V5 => v5::V5.write(packet, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(level: u8, name: &[u8]) -> Vec<u8> {
        let mut body = vec![0, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, 0b10, 0, 60, 0, 0]);
        let mut v = vec![0x10, body.len() as u8];
        v.extend(body);
        v
    }

    #[test]
    fn sniffs_versions() {
        assert_eq!(
            sniff(&connect(4, b"MQTT"), 1024),
            Sniff::Connect(Version::V311)
        );
        assert_eq!(
            sniff(&connect(5, b"MQTT"), 1024),
            Sniff::Connect(Version::V5)
        );
        assert_eq!(
            sniff(&connect(3, b"MQIsdp"), 1024),
            Sniff::UnsupportedLevel(3)
        );
        assert_eq!(sniff(&[0x10], 1024), Sniff::Incomplete);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n", 1024), Sniff::NotConnect);
        assert_eq!(sniff(&[0xC0, 0x00], 1024), Sniff::NotConnect);
    }

    #[test]
    fn peeks_publish_qos_and_id() {
        // QoS 1, topic "a/b", pkid 0x0102, payload "x"
        let frame = [0x32, 8, 0, 3, b'a', b'/', b'b', 1, 2, b'x'];
        assert_eq!(peek_publish(&frame, 1024), Some((1, 0x0102)));
        let frame0 = [0x30, 6, 0, 3, b'a', b'/', b'b', b'x'];
        assert_eq!(peek_publish(&frame0, 1024), Some((0, 0)));
        assert_eq!(peek_publish(&frame[..4], 1024), None);
    }
}
