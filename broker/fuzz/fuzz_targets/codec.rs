//! Arbitrary bytes through the gateway's codec, as a connection reads them:
//! the protocol sniffing of the first frame, the PUBLISH QoS / packet-id
//! peek, and rumqttd's v3.1.1 and v5 decoders behind `Version::read`.
//!
//! Checks: nothing panics; every decode consumes one whole frame no larger
//! than the packet limit; the sniffed version agrees with the decoders; a
//! peeked QoS and packet id equal the decoded ones.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqchat_broker::fuzzing::{peek_publish, sniff, Sniff, Version};
use rumqttd::protocol::{Error, Packet};

/// The gateway's default packet limit, and a tiny one to reach the
/// size-limit paths with short inputs.
const LIMITS: [usize; 2] = [64 * 1024, 16];

fuzz_target!(|data: &[u8]| {
    for max in LIMITS {
        let sniffed = sniff(data, max);
        for version in [Version::V311, Version::V5] {
            check_stream(data, max, version, &sniffed);
        }
    }
});

/// Decodes `data` as a connection's input stream, packet after packet.
fn check_stream(data: &[u8], max: usize, version: Version, sniffed: &Sniff) {
    let mut buf = BytesMut::from(data);
    let mut first = true;
    loop {
        let before = buf.len();
        let peeked = peek_publish(&buf, max);
        let result = version.read(&mut buf, max);
        let consumed = before - buf.len();
        if first {
            check_sniff(sniffed, version, &result);
            first = false;
        }
        let packet = match result {
            Ok(p) => p,
            Err(Error::InsufficientBytes(_)) => {
                assert_eq!(consumed, 0, "an incomplete frame must not be consumed");
                assert!(peeked.is_none(), "peeked an incomplete PUBLISH");
                return;
            }
            // The connection closes on any other error.
            Err(_) => return,
        };
        // One frame: fixed header (at most 5 bytes) plus at most `max`.
        assert!(consumed >= 2, "a packet is at least 2 bytes");
        assert!(consumed <= max + 5, "consumed {consumed} > limit {max}");
        match &packet {
            Packet::Publish(publish, _) => {
                // `Publish` keeps qos and pkid private; its own serialization
                // starts with the fixed-header byte and the packet id.
                let raw = publish.serialize();
                let qos = (raw[0] >> 1) & 0b11;
                let pkid = u16::from_be_bytes([raw[1], raw[2]]);
                assert_eq!(
                    peeked,
                    Some((qos, pkid)),
                    "peek disagrees with the decoder ({version:?})"
                );
            }
            _ => assert!(peeked.is_none(), "peeked a PUBLISH in {packet:?}"),
        }
        // The gateway writes packets back with the same codec; what it
        // decoded must encode without a panic (the result may be an error,
        // e.g. for a packet type only a client sends).
        let mut out = BytesMut::new();
        let _ = version.write(packet, &mut out);
    }
}

/// The sniffer decides the version before anything is decoded; it must agree
/// with the decoders on the first frame.
fn check_sniff(sniffed: &Sniff, version: Version, first: &Result<Packet, Error>) {
    match first {
        Ok(Packet::Connect(..)) => assert_eq!(
            sniffed,
            &Sniff::Connect(version),
            "decoded a {version:?} CONNECT the sniffer called {sniffed:?}"
        ),
        Err(Error::InsufficientBytes(_)) => assert!(
            matches!(sniffed, Sniff::Incomplete | Sniff::NotConnect),
            "decoder wants more bytes, sniffer said {sniffed:?}"
        ),
        _ => {}
    }
    if *sniffed == Sniff::Incomplete {
        assert!(
            !matches!(first, Ok(_)),
            "sniffer wanted more bytes, the decoder had a whole packet"
        );
    }
}
