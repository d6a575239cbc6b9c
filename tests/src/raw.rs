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
