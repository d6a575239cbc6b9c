//! What crosses the bus. User subjects carry small binary frames (a tag
//! byte, then the fields), since they carry every cross-node push; the
//! rarer control messages are JSON.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

const TAG_EVENT: u8 = b'e';
const TAG_TAKEOVER: u8 = b't';
const TAG_WILL: u8 = b'w';

/// A frame on a user's subject.
#[derive(Debug, PartialEq, Eq)]
pub enum UserFrame {
    /// Push `payload` to the user's `subtopic`.
    Event { subtopic: String, payload: Bytes },
    /// A connection with this namespaced client id opened on another node:
    /// close ours.
    TakeOver { client_id: String },
    /// A will of the user's was published on another node: deliver it to
    /// the user's connections here (its QoS and the broker's MQTT 5
    /// PUBLISH packet).
    Will { qos: u8, packet: Bytes },
}

impl UserFrame {
    pub fn event(subtopic: &str, payload: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(2 + subtopic.len() + payload.len());
        b.put_u8(TAG_EVENT);
        b.put_slice(subtopic.as_bytes());
        b.put_u8(b'\n');
        b.put_slice(payload);
        b.freeze()
    }

    pub fn takeover(client_id: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(1 + client_id.len());
        b.put_u8(TAG_TAKEOVER);
        b.put_slice(client_id.as_bytes());
        b.freeze()
    }

    pub fn will(qos: u8, packet: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(2 + packet.len());
        b.put_u8(TAG_WILL);
        b.put_u8(qos);
        b.put_slice(packet);
        b.freeze()
    }

    pub fn parse(frame: &Bytes) -> Option<UserFrame> {
        let (&tag, rest) = frame.split_first()?;
        match tag {
            TAG_EVENT => {
                let nl = rest.iter().position(|&b| b == b'\n')?;
                let subtopic = std::str::from_utf8(&rest[..nl]).ok()?;
                // Our own subtopics only: a single plain level.
                if subtopic.is_empty() || !subtopic.bytes().all(|b| b.is_ascii_lowercase()) {
                    return None;
                }
                Some(UserFrame::Event {
                    subtopic: subtopic.to_owned(),
                    payload: frame.slice(2 + nl..),
                })
            }
            TAG_TAKEOVER => Some(UserFrame::TakeOver {
                client_id: std::str::from_utf8(rest).ok()?.to_owned(),
            }),
            TAG_WILL if rest.len() > 1 => Some(UserFrame::Will {
                qos: rest[0],
                packet: frame.slice(2..),
            }),
            _ => None,
        }
    }
}

/// The inbox cursor of a stored event's JSON (`{"type":"…","cursor":N,…}`,
/// as `domain::outbox` composes it), or `None` for an ephemeral one.
pub fn cursor_of(event: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"cursor\":";
    // The cursor comes right after the type: look only at the head.
    let head = &event[..event.len().min(96)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = head[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&head[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// A message on the presence subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresenceMsg {
    /// A user's first connection on `node` opened, or its last one closed.
    /// `seq` counts the node's deltas, so a receiver notices one it missed.
    Delta {
        node: String,
        seq: u64,
        user: u64,
        online: bool,
    },
    /// `node` is alive; `seq` is its last delta's.
    Heartbeat { node: String, seq: u64 },
    /// Every user `node` holds a connection of, as of delta `seq`; in
    /// chunks (`first` to `last`) so a message stays under NATS's size cap.
    State {
        node: String,
        seq: u64,
        users: Vec<u64>,
        first: bool,
        last: bool,
    },
    /// Asks `node` (every node when `None`) to send its state: a node
    /// that starts, comes back to the bus, or missed a delta.
    Want { from: String, node: Option<String> },
    /// `node` is shutting down: its users are gone now.
    Bye { node: String },
}

/// A message on the sessions subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsEnded {
    pub user: u64,
    /// One login session, or all of the user's when `None`.
    pub session: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_junk_is_refused() {
        let w = UserFrame::will(1, b"\x30\x05ab");
        assert_eq!(
            UserFrame::parse(&w),
            Some(UserFrame::Will {
                qos: 1,
                packet: Bytes::from_static(b"\x30\x05ab")
            })
        );
        assert_eq!(UserFrame::parse(&Bytes::from_static(b"w\x01")), None);
        let e = UserFrame::event("events", br#"{"type":"x","cursor":7}"#);
        assert_eq!(
            UserFrame::parse(&e),
            Some(UserFrame::Event {
                subtopic: "events".into(),
                payload: Bytes::from_static(br#"{"type":"x","cursor":7}"#)
            })
        );
        let t = UserFrame::takeover("7|phone");
        assert_eq!(
            UserFrame::parse(&t),
            Some(UserFrame::TakeOver {
                client_id: "7|phone".into()
            })
        );
        for junk in [&b""[..], b"x", b"eevents", b"e../x\n{}", b"e\n{}"] {
            assert_eq!(UserFrame::parse(&Bytes::from_static(junk)), None);
        }
    }

    #[test]
    fn cursor_is_read_from_the_head() {
        assert_eq!(
            cursor_of(br#"{"type":"message.created","cursor":42,"x":1}"#),
            Some(42)
        );
        assert_eq!(cursor_of(br#"{"type":"presence","user_id":1}"#), None);
        assert_eq!(cursor_of(br#"{"type":"typing","cursor":}"#), None);
    }
}
