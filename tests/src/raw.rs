//! Hand-built MQTT 3.1.1 packets, for raw-socket clients that misbehave on
//! purpose (or stop reading).

use super::TestUser;

/// A length-prefixed string or binary field.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A packet: first byte, remaining length (variable-length), body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// CONNECT at protocol `level` (3: MQTT 3.1, 4: 3.1.1) with the user's
/// credentials and a clean session.
pub fn connect(level: u8, client_id: &str, user: &TestUser, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, if level == 3 { b"MQIsdp" } else { b"MQTT" });
    body.push(level);
    body.push(0b1100_0010); // username, password, clean session
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    string(&mut body, user.id.to_string().as_bytes());
    string(&mut body, user.access_token.as_bytes());
    frame(0x10, &body)
}

/// SUBSCRIBE to one filter at `qos`.
pub fn subscribe(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    string(&mut body, filter.as_bytes());
    body.push(qos);
    frame(0x82, &body)
}

/// A will in a hand-built CONNECT.
#[derive(Debug, Clone)]
pub struct RawWill {
    pub topic: String,
    pub message: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 Will Delay Interval (seconds).
    pub delay: Option<u32>,
}

/// A CONNECT built field by field: MQTT 3.1.1 (`level` 4) or 5 (`level`
/// 5), with the user's credentials.
#[derive(Debug, Clone)]
pub struct Connect {
    pub level: u8,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    /// MQTT 5 Session Expiry Interval.
    pub expiry: Option<u32>,
    /// MQTT 5 Receive Maximum.
    pub receive_max: Option<u16>,
    pub will: Option<RawWill>,
}

impl Connect {
    pub fn v311(client_id: &str, clean: bool) -> Connect {
        Connect {
            level: 4,
            client_id: client_id.to_owned(),
            clean,
            keep_alive: 60,
            expiry: None,
            receive_max: None,
            will: None,
        }
    }

    pub fn v5(client_id: &str, clean: bool, expiry: Option<u32>) -> Connect {
        Connect {
            level: 5,
            expiry,
            ..Connect::v311(client_id, clean)
        }
    }

    pub fn with_will(mut self, will: RawWill) -> Connect {
        self.will = Some(will);
        self
    }

    pub fn bytes(&self, user: &TestUser) -> Vec<u8> {
        let v5 = self.level == 5;
        let mut body = Vec::new();
        string(&mut body, b"MQTT");
        body.push(self.level);
        let mut flags = 0b1100_0000u8; // username, password
        if self.clean {
            flags |= 0b10;
        }
        if let Some(w) = &self.will {
            flags |= 0b100 | (w.qos << 3) | if w.retain { 0b10_0000 } else { 0 };
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if v5 {
            let mut props = Vec::new();
            if let Some(e) = self.expiry {
                props.push(0x11);
                props.extend_from_slice(&e.to_be_bytes());
            }
            if let Some(r) = self.receive_max {
                props.push(0x21);
                props.extend_from_slice(&r.to_be_bytes());
            }
            varint(&mut body, props.len());
            body.extend_from_slice(&props);
        }
        string(&mut body, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if v5 {
                let mut props = Vec::new();
                if let Some(d) = w.delay {
                    props.push(0x18);
                    props.extend_from_slice(&d.to_be_bytes());
                }
                varint(&mut body, props.len());
                body.extend_from_slice(&props);
            }
            string(&mut body, w.topic.as_bytes());
            string(&mut body, &w.message);
        }
        string(&mut body, user.id.to_string().as_bytes());
        string(&mut body, user.access_token.as_bytes());
        frame(0x10, &body)
    }
}

/// A variable-length integer.
pub fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

/// SUBSCRIBE to one filter at `qos`, MQTT 5 (an empty property list).
pub fn subscribe5(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.push(0);
    string(&mut body, filter.as_bytes());
    body.push(qos);
    frame(0x82, &body)
}

/// PUBACK of `pkid`.
pub fn puback(pkid: u16) -> Vec<u8> {
    let [a, b] = pkid.to_be_bytes();
    vec![0x40, 0x02, a, b]
}

/// A packet read off the wire: its first byte and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    pub first: u8,
    pub body: Vec<u8>,
}

/// A PUBLISH, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPublish {
    pub topic: String,
    pub qos: u8,
    pub dup: bool,
    pub pkid: Option<u16>,
    pub payload: Vec<u8>,
}

impl RawPacket {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// The PUBLISH in this packet, if it is one (`v5`: with properties).
    pub fn publish(&self, v5: bool) -> Option<RawPublish> {
        if self.kind() != 3 {
            return None;
        }
        let qos = (self.first >> 1) & 3;
        let b = &self.body;
        let len = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
        let topic = String::from_utf8(b.get(2..2 + len)?.to_vec()).ok()?;
        let mut at = 2 + len;
        let pkid = if qos > 0 {
            at += 2;
            Some(u16::from_be_bytes([*b.get(at - 2)?, *b.get(at - 1)?]))
        } else {
            None
        };
        if v5 {
            let (props, used) = read_varint(b.get(at..)?)?;
            at += used + props;
        }
        Some(RawPublish {
            topic,
            qos,
            dup: self.first & 0b1000 != 0,
            pkid,
            payload: b.get(at..)?.to_vec(),
        })
    }
}

/// A variable-length integer at the start of `b`: its value and length.
pub fn read_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, byte) in b.iter().enumerate().take(4) {
        n |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// Splits whole packets off the front of `buf`.
pub fn take_packet(buf: &mut Vec<u8>) -> Option<RawPacket> {
    let first = *buf.first()?;
    let (len, used) = read_varint(buf.get(1..)?)?;
    let end = 1 + used + len;
    if buf.len() < end {
        return None;
    }
    let body = buf[1 + used..end].to_vec();
    buf.drain(..end);
    Some(RawPacket { first, body })
}
