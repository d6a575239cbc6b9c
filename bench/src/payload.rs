//! The pushed bytes: a JSON event shaped like the real `message.created`
//! push, with a per-subscriber sequence number (to count losses and
//! duplicates) and the send time (to measure end-to-end latency). Both numbers
//! are fixed-width strings at fixed offsets, so the receiver reads them
//! without a JSON parser and the decode cost does not depend on the target.

use bytes::{Bytes, BytesMut};

const DIGITS: usize = 20;
const HEAD: &str = r#"{"type":"bench.push","seq":""#;
const MID: &str = r#"","sent_ns":""#;
const BODY: &str = r#"","message":{"conversation_id":42,"sender_id":7,"body":{"text":""#;
const TAIL: &str = r#""}}}"#;

const SEQ_AT: usize = HEAD.len();
const SENT_AT: usize = SEQ_AT + DIGITS + MID.len();

/// Smallest payload the layout fits in.
pub const MIN_SIZE: usize = SENT_AT + DIGITS + BODY.len() + TAIL.len();

/// A payload of one size; stamps copies of itself.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
}

impl Template {
    /// `size` is clamped up to [`MIN_SIZE`]; the text field is padded to fit.
    pub fn new(size: usize) -> Template {
        let size = size.max(MIN_SIZE);
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(HEAD.as_bytes());
        bytes.extend_from_slice(&[b'0'; DIGITS]);
        bytes.extend_from_slice(MID.as_bytes());
        bytes.extend_from_slice(&[b'0'; DIGITS]);
        bytes.extend_from_slice(BODY.as_bytes());
        bytes.resize(size - TAIL.len(), b'x');
        bytes.extend_from_slice(TAIL.as_bytes());
        Template { bytes }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// A payload carrying `seq` and `sent_ns`.
    pub fn stamp(&self, seq: u64, sent_ns: u64) -> Bytes {
        let mut out = BytesMut::from(&self.bytes[..]);
        write_digits(&mut out[SEQ_AT..SEQ_AT + DIGITS], seq);
        write_digits(&mut out[SENT_AT..SENT_AT + DIGITS], sent_ns);
        out.freeze()
    }
}

/// `(seq, sent_ns)` of a payload made by [`Template::stamp`].
pub fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = read_digits(payload.get(SEQ_AT..SEQ_AT + DIGITS)?)?;
    let sent = read_digits(payload.get(SENT_AT..SENT_AT + DIGITS)?)?;
    Some((seq, sent))
}

fn write_digits(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn read_digits(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit()
            .then(|| acc.wrapping_mul(10).wrapping_add(u64::from(d - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_are_json() {
        let t = Template::new(200);
        assert_eq!(t.len(), 200);
        let p = t.stamp(12_345, u64::MAX);
        assert_eq!(p.len(), 200);
        assert_eq!(decode(&p), Some((12_345, u64::MAX)));
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["type"], "bench.push");
        assert_eq!(v["seq"], "00000000000000012345");
    }

    #[test]
    fn small_sizes_are_clamped() {
        let t = Template::new(10);
        assert_eq!(t.len(), MIN_SIZE);
        assert_eq!(decode(&t.stamp(1, 2)), Some((1, 2)));
        assert_eq!(decode(b"{}"), None);
    }
}
