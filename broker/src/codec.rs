//! The MQTT wire codec, per protocol level, on top of `rumqttd::protocol`.

use bytes::BytesMut;
use rumqttd::protocol::{self, v4, v5, ConnectReturnCode, Packet, Protocol};

/// Which MQTT version a connection speaks; fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// What the first bytes of a connection say about its protocol.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
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
pub fn sniff(buf: &[u8], max_packet: usize) -> Sniff {
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
pub fn peek_publish(buf: &[u8], max_packet: usize) -> Option<(u8, u16)> {
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
    /// Decodes the packet at the start of `buf` and removes it from `buf`.
    /// `InsufficientBytes` means the frame is not complete yet and nothing
    /// was taken; any other error means the connection must close.
    pub fn read(self, buf: &mut BytesMut, max: usize) -> Result<Packet, protocol::Error> {
        // Framing is the same in both versions. Checking it first means the
        // guards below, and the decoders, always see one whole frame.
        let header = v4::check(buf.iter(), max)?;
        // rumqttd's v5 decoder has no arm for CONNACK (2) or UNSUBACK (11)
        // and panics (`unreachable!`) on either with a body. Only a server
        // sends them.
        let kind = header.byte1 >> 4;
        if self == Version::V5 && matches!(kind, 2 | 11) {
            return Err(protocol::Error::InvalidPacketType(kind));
        }
        // rumqttd's decoders read neither the fixed header's flag bits nor
        // the CONNECT's reserved ones; a frame they would accept may still
        // be one the spec says must close the connection.
        check_fixed_flags(header.byte1)?;
        if kind == 1 {
            self.check_connect_flags(&buf[header.fixed_header_len..header.frame_length()])?;
        }
        let decoded = match self {
            Version::V311 => v4::V4.read_mut(buf, max),
            Version::V5 => v5::V5.read_mut(buf, max),
        };
        // The decoders take the whole frame off `buf` before parsing it, and
        // report a field cut short inside it (a v5 property length) as
        // `InsufficientBytes`. That frame is gone and malformed; waiting for
        // more bytes would silently drop it.
        match decoded {
            Err(protocol::Error::InsufficientBytes(_)) => Err(protocol::Error::MalformedPacket),
            Ok(packet) => check_strings(&packet).map(|()| packet),
            other => other,
        }
    }

    /// The CONNECT's flags byte, which follows the protocol name and level
    /// in `body` (the frame after its fixed header). A body too short to
    /// hold it is left to the decoder to refuse.
    fn check_connect_flags(self, body: &[u8]) -> Result<(), protocol::Error> {
        let Some(name_len) = body
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return Ok(());
        };
        let Some(&flags) = body.get(2 + name_len + 1) else {
            return Ok(());
        };
        // MQTT-3.1.2-3 (5.0 §3.1.2.3 too): bit 0 is reserved and must be 0.
        if flags & 0b1 != 0 {
            return Err(protocol::Error::IncorrectPacketFormat);
        }
        // MQTT-3.1.2-22: in 3.1.1, no password without a username. MQTT 5
        // allows one (§3.1.2.9); the credentials check refuses it there.
        if self == Version::V311 && flags & 0b1100_0000 == 0b0100_0000 {
            return Err(protocol::Error::IncorrectPacketFormat);
        }
        Ok(())
    }

    pub fn write(self, packet: Packet, out: &mut BytesMut) -> Result<usize, protocol::Error> {
        match self {
            Version::V311 => v4::V4.write(without_properties(packet), out),
            Version::V5 => {
                let start = out.len();
                let written = v5::V5.write(packet, out)?;
                Ok(fix_disconnect_length(&mut out[start..], written))
            }
        }
    }
}

impl Version {
    /// CONNACK code for "try again later": 3.1.1 has one code for it (0x03),
    /// MQTT 5 its own (0x88). rumqttd's v4 encoder panics on v5-only codes.
    pub fn unavailable(self) -> ConnectReturnCode {
        match self {
            Version::V311 => ConnectReturnCode::ServiceUnavailable,
            Version::V5 => ConnectReturnCode::ServerUnavailable,
        }
    }

    /// CONNACK code for "you hold too much already": MQTT 5 says so (0x97
    /// quota exceeded); 3.1.1 can only say 0x03 server unavailable.
    pub fn quota_exceeded(self) -> ConnectReturnCode {
        match self {
            Version::V311 => ConnectReturnCode::ServiceUnavailable,
            Version::V5 => ConnectReturnCode::QuotaExceeded,
        }
    }

    /// Writes a delivery to a clean session: a PUBLISH at QoS 0, or at QoS 1
    /// with `pkid`. rumqttd keeps a publish's QoS and packet id private to
    /// its crate, so the frame is encoded at QoS 0 and then given both: the
    /// QoS bits in the first byte, and the packet id, which goes right after
    /// the topic name in 3.1.1 and 5 alike (the remaining length grows by 2).
    pub fn write_publish(
        self,
        publish: protocol::Publish,
        properties: Option<protocol::PublishProperties>,
        pkid: Option<u16>,
        out: &mut BytesMut,
    ) -> Result<usize, protocol::Error> {
        let start = out.len();
        let written = self.write(Packet::Publish(publish, properties), out)?;
        let Some(pkid) = pkid else {
            return Ok(written);
        };
        let frame = &out[start..];
        let header = v4::check(frame.iter(), usize::MAX)?;
        let old_len = header.remaining_len;
        let old_varint = header.fixed_header_len - 1;
        let mut varint = [0u8; 4];
        let new_varint = encode_length(old_len + 2, &mut varint)?;
        let grow = new_varint - old_varint;
        let topic_start = start + header.fixed_header_len;
        let topic_len = out
            .get(topic_start..topic_start + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or(protocol::Error::MalformedPacket)?;
        let topic_end = topic_start + 2 + topic_len;
        let end = out.len();
        out.resize(end + 2 + grow, 0);
        out.copy_within(topic_end..end, topic_end + 2 + grow);
        out.copy_within(topic_start..topic_end, topic_start + grow);
        out[topic_end + grow..topic_end + grow + 2].copy_from_slice(&pkid.to_be_bytes());
        out[start + 1..start + 1 + new_varint].copy_from_slice(&varint[..new_varint]);
        out[start] |= 0b0010;
        Ok(written + 2 + grow)
    }
}

/// Checks the flag bits of a fixed header's first byte: PUBREL, SUBSCRIBE
/// and UNSUBSCRIBE carry 0b0010, every other type but PUBLISH (whose bits
/// the decoders read) 0 (3.1.1 §2.2.2 table 2.2, 5.0 §2.1.3). Anything else
/// must close the connection (MQTT-2.2.2-2; MQTT-3.6.1-1, -3.8.1-1,
/// -3.10.1-1 for the three with bits set).
fn check_fixed_flags(byte1: u8) -> Result<(), protocol::Error> {
    let required = match byte1 >> 4 {
        3 => return Ok(()),
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if byte1 & 0x0F != required {
        return Err(protocol::Error::IncorrectPacketFormat);
    }
    Ok(())
}

/// Checks the strings of a decoded packet that the decoders take as they
/// come. A UTF-8 string with U+0000 is malformed (MQTT-1.5.4-2), as is a
/// topic that is not UTF-8 at all (MQTT-1.5.3-1; rumqttd keeps PUBLISH and
/// will topics as bytes); a will topic must also have a character
/// (MQTT-4.7.3-1). A CONNECT that fails these is closed without a CONNACK
/// (MQTT-3.1.4-1).
fn check_strings(packet: &Packet) -> Result<(), protocol::Error> {
    let topic = |t: &[u8]| match std::str::from_utf8(t) {
        Ok(t) if t.contains('\0') => Err(protocol::Error::MalformedPacket),
        Ok(_) => Ok(()),
        Err(_) => Err(protocol::Error::TopicNotUtf8),
    };
    let no_nul = |s: &str| {
        if s.contains('\0') {
            Err(protocol::Error::MalformedPacket)
        } else {
            Ok(())
        }
    };
    match packet {
        Packet::Connect(connect, _, will, _, login) => {
            no_nul(&connect.client_id)?;
            if let Some(login) = login {
                no_nul(&login.username)?;
            }
            if let Some(will) = will {
                if will.topic.is_empty() {
                    return Err(protocol::Error::MalformedPacket);
                }
                topic(&will.topic)?;
            }
            Ok(())
        }
        Packet::Publish(publish, _) => topic(&publish.topic),
        Packet::Subscribe(sub, _) => sub.filters.iter().try_for_each(|f| no_nul(&f.path)),
        Packet::Unsubscribe(unsub, _) => unsub.filters.iter().try_for_each(|f| no_nul(f)),
        _ => Ok(()),
    }
}

/// MQTT's variable-length remaining length (at most 4 bytes); returns how
/// many bytes of `out` it took.
fn encode_length(mut len: usize, out: &mut [u8; 4]) -> Result<usize, protocol::Error> {
    for (i, byte) in out.iter_mut().enumerate() {
        let low = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            *byte = low;
            return Ok(i + 1);
        }
        *byte = low | 0x80;
    }
    Err(protocol::Error::PayloadTooLong)
}

/// rumqttd's v5 encoder writes a DISCONNECT that has a reason code and no
/// properties as `E0 01 <reason> 00`: the reason and an empty property
/// length under a remaining length of 1, so the client reads the last byte
/// as the start of another packet. (An explicit empty property set is no way
/// around it: that encodes as `E0 00`, losing the reason.) Sets the length
/// to 2; returns how many bytes the frame really has.
fn fix_disconnect_length(frame: &mut [u8], written: usize) -> usize {
    match frame {
        [0xE0, len @ 1, _, 0] => {
            *len = 2;
            4
        }
        _ => written,
    }
}

/// MQTT 3.1.1 has no properties, and rumqttd's v4 encoder panics
/// (`unreachable!`) on a packet that carries some. They do reach 3.1.1
/// connections: the router forwards a publish with the properties it was
/// made with (an uplink reply with correlation data) to every subscriber,
/// whatever its protocol version.
fn without_properties(packet: Packet) -> Packet {
    match packet {
        Packet::Connect(connect, _, will, _, login) => {
            Packet::Connect(connect, None, will, None, login)
        }
        Packet::ConnAck(ack, _) => Packet::ConnAck(ack, None),
        Packet::Publish(publish, _) => Packet::Publish(publish, None),
        Packet::PubAck(ack, _) => Packet::PubAck(ack, None),
        Packet::Subscribe(sub, _) => Packet::Subscribe(sub, None),
        Packet::SubAck(ack, _) => Packet::SubAck(ack, None),
        Packet::PubRec(rec, _) => Packet::PubRec(rec, None),
        Packet::PubRel(rel, _) => Packet::PubRel(rel, None),
        Packet::PubComp(comp, _) => Packet::PubComp(comp, None),
        Packet::Unsubscribe(unsub, _) => Packet::Unsubscribe(unsub, None),
        Packet::UnsubAck(ack, _) => Packet::UnsubAck(ack, None),
        Packet::Disconnect(disconnect, _) => Packet::Disconnect(disconnect, None),
        p @ (Packet::PingReq(_) | Packet::PingResp(_)) => p,
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
    fn refusals_for_too_many_connections_encode_in_both_versions() {
        use rumqttd::protocol::ConnAck;
        for (version, quota, unavailable) in [(Version::V311, 3, 3), (Version::V5, 0x97, 0x88)] {
            for (code, want) in [
                (version.quota_exceeded(), quota),
                (version.unavailable(), unavailable),
            ] {
                let mut out = BytesMut::new();
                let ack = ConnAck {
                    session_present: false,
                    code,
                };
                let written = version.write(Packet::ConnAck(ack, None), &mut out);
                assert!(written.is_ok(), "{version:?} {code:?}");
                assert_eq!(out[3], want, "{version:?} {code:?}");
            }
        }
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

    // Found by the `codec` fuzz target: rumqttd's v5 decoder has no arm for
    // CONNACK or UNSUBACK and panicked on them.
    #[test]
    fn v5_server_only_packets_are_errors_not_panics() {
        for frame in [&[0x2E, 1, 0][..], &[0x20, 2, 0, 0], &[0xB0, 3, 0, 1, 0]] {
            let mut buf = BytesMut::from(frame);
            assert!(Version::V5.read(&mut buf, 1024).is_err(), "{frame:?}");
        }
        // MQTT 3.1.1 decodes them (the connection then refuses them).
        let mut buf = BytesMut::from(&[0xB0, 2, 0, 1][..]);
        assert!(matches!(
            Version::V311.read(&mut buf, 1024),
            Ok(Packet::UnsubAck(..))
        ));
    }

    // Found by the `codec` fuzz target: a v5 property length cut short inside
    // a complete frame came back as "insufficient bytes" after the frame had
    // been taken off the buffer, so the connection dropped it silently and
    // read on instead of closing.
    #[test]
    fn a_field_cut_short_inside_a_frame_is_malformed() {
        // PUBLISH "a" whose property length has a continuation bit and ends
        // the frame, then a PINGREQ.
        let mut buf = BytesMut::from(&[0x30, 4, 0, 1, b'a', 0x80, 0xC0, 0][..]);
        assert!(matches!(
            Version::V5.read(&mut buf, 1024),
            Err(protocol::Error::MalformedPacket)
        ));
        // An incomplete frame is still left alone.
        let mut buf = BytesMut::from(&[0x30, 4, 0, 1][..]);
        assert!(matches!(
            Version::V5.read(&mut buf, 1024),
            Err(protocol::Error::InsufficientBytes(_))
        ));
        assert_eq!(buf.len(), 4);
    }

    // Found by the `connection` fuzz target: the v5 DISCONNECT the gateway
    // sends when it closes a connection (here: malformed packet) was one
    // byte longer than its remaining length.
    #[test]
    fn v5_disconnect_with_a_reason_is_well_framed() {
        let mut out = BytesMut::new();
        let disconnect = protocol::Disconnect {
            reason_code: protocol::DisconnectReasonCode::MalformedPacket,
        };
        Version::V5
            .write(Packet::Disconnect(disconnect.clone(), None), &mut out)
            .unwrap();
        assert_eq!(&out[..], &[0xE0, 2, 0x81, 0]);
        let Ok(Packet::Disconnect(read, _)) = Version::V5.read(&mut out, 1024) else {
            panic!("not a DISCONNECT");
        };
        assert_eq!(read, disconnect);
        assert!(out.is_empty());
    }

    // The router forwards a publish with the properties it was made with
    // (an uplink reply with correlation data) to 3.1.1 subscribers too;
    // rumqttd's v4 encoder panicked on them.
    #[test]
    fn deliveries_get_their_qos_and_packet_id() {
        use bytes::Bytes;
        use protocol::{Publish, PublishProperties};
        // 60 and 200 bytes of payload: the remaining length takes one byte
        // at QoS 0 and stays one, or grows to two, with the packet id.
        for (version, payload_len) in [
            (Version::V311, 60),
            (Version::V311, 120),
            (Version::V311, 200),
            (Version::V5, 120),
            (Version::V5, 200),
        ] {
            let payload = Bytes::from(vec![b'p'; payload_len]);
            let props = (version == Version::V5).then(|| PublishProperties {
                subscription_identifiers: vec![7, 300],
                correlation_data: Some(Bytes::from_static(b"corr")),
                ..Default::default()
            });
            for pkid in [None, Some(1), Some(0xBEEF)] {
                let mut out = BytesMut::from(&b"prefix"[..]);
                let publish = Publish::new(
                    Bytes::from_static(b"users/7/events"),
                    payload.clone(),
                    false,
                );
                let n = version
                    .write_publish(publish, props.clone(), pkid, &mut out)
                    .unwrap_or_else(|e| panic!("{version:?}: {e}"));
                assert_eq!(out.len(), 6 + n, "{version:?} {pkid:?}: length returned");
                let mut frame = out.split_off(6);
                let expected = pkid.map_or((0, 0), |id| (1, id));
                assert_eq!(peek_publish(&frame, 1 << 20), Some(expected));
                match version.read(&mut frame, 1 << 20) {
                    Ok(Packet::Publish(p, got_props)) => {
                        assert_eq!(&p.topic[..], b"users/7/events");
                        assert_eq!(p.payload, payload);
                        assert_eq!(got_props, props, "{version:?} {pkid:?}");
                    }
                    other => panic!("{version:?} {pkid:?}: {other:?}"),
                }
                assert!(frame.is_empty(), "exactly one frame");
            }
        }
    }

    /// A 3.1.1 CONNECT with these flags and payload fields after the
    /// client id "c".
    fn connect_with(flags: u8, fields: &[&[u8]]) -> BytesMut {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60, 0, 1, b'c'];
        for f in fields {
            body.extend_from_slice(&(f.len() as u16).to_be_bytes());
            body.extend_from_slice(f);
        }
        let mut v = vec![0x10, body.len() as u8];
        v.extend(body);
        BytesMut::from(&v[..])
    }

    #[test]
    fn wrong_fixed_header_flags_are_refused() {
        // SUBSCRIBE, UNSUBSCRIBE, PUBREL need 0b0010; PINGREQ, PUBACK 0.
        for frame in [
            &[0x80, 6, 0, 1, 0, 1, b'a', 0][..],
            &[0xA0, 5, 0, 1, 0, 1, b'a'],
            &[0x60, 2, 0, 1],
            &[0xC1, 0],
            &[0x42, 2, 0, 1],
        ] {
            for version in [Version::V311, Version::V5] {
                let mut buf = BytesMut::from(frame);
                assert!(
                    matches!(
                        version.read(&mut buf, 1024),
                        Err(protocol::Error::IncorrectPacketFormat)
                    ),
                    "{version:?} {frame:02X?}"
                );
            }
        }
        let mut buf = BytesMut::from(&[0x82, 6, 0, 1, 0, 1, b'a', 0, 0x62, 2, 0, 1][..]);
        assert!(matches!(
            Version::V311.read(&mut buf, 1024),
            Ok(Packet::Subscribe(..))
        ));
        assert!(matches!(
            Version::V311.read(&mut buf, 1024),
            Ok(Packet::PubRel(..))
        ));
    }

    #[test]
    fn malformed_connects_are_refused() {
        let ok = connect_with(0b1100_0010, &[b"u", b"p"]);
        assert!(matches!(
            Version::V311.read(&mut ok.clone(), 1024),
            Ok(Packet::Connect(..))
        ));
        let will = 0b1100_0110;
        for (what, mut buf) in [
            ("reserved flag", connect_with(0b1100_0011, &[b"u", b"p"])),
            ("password alone", connect_with(0b0100_0010, &[b"p"])),
            (
                "NUL in username",
                connect_with(0b1100_0010, &[b"u\0", b"p"]),
            ),
            (
                "empty will topic",
                connect_with(will, &[b"", b"m", b"u", b"p"]),
            ),
            (
                "NUL in will topic",
                connect_with(will, &[b"a\0", b"m", b"u", b"p"]),
            ),
            (
                "non-UTF-8 will topic",
                connect_with(will, &[b"\xFF", b"m", b"u", b"p"]),
            ),
        ] {
            assert!(Version::V311.read(&mut buf, 1024).is_err(), "{what}");
        }
    }

    #[test]
    fn nul_and_non_utf8_in_topics_and_filters_are_malformed() {
        for frame in [
            &[0x30, 5, 0, 3, b'a', 0, b'b'][..],
            &[0x30, 4, 0, 2, 0xC3, 0x28],
            &[0x82, 8, 0, 1, 0, 3, b'a', 0, b'b', 0],
            &[0xA2, 7, 0, 1, 0, 3, b'a', 0, b'b'],
        ] {
            let mut buf = BytesMut::from(frame);
            assert!(Version::V311.read(&mut buf, 1024).is_err(), "{frame:02X?}");
        }
    }

    #[test]
    fn properties_are_dropped_for_mqtt_311() {
        let publish = protocol::Publish::new("users/1/replies", "{}", false);
        let props = protocol::PublishProperties {
            correlation_data: Some(bytes::Bytes::from_static(b"c")),
            ..Default::default()
        };
        let mut with = BytesMut::new();
        Version::V311
            .write(Packet::Publish(publish.clone(), Some(props)), &mut with)
            .unwrap();
        let mut without = BytesMut::new();
        Version::V311
            .write(Packet::Publish(publish, None), &mut without)
            .unwrap();
        assert_eq!(with, without);
    }
}
