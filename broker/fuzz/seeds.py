#!/usr/bin/env python3
"""Writes the seed corpora under broker/fuzz/corpus/ (committed; rerun after
changing this file). The fuzzers start from these valid packets and mutate.

codec/       raw MQTT 3.1.1 and 5 packets and packet streams
connection/  [mode byte][control byte] + what a client sends after CONNECT
             (see the layout in fuzz_targets/connection.rs)

acl/ is not written here: its inputs are `arbitrary` encodings, so its seeds
are a few files kept from a fuzzing run (libFuzzer's -merge=1).
"""

import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(data)) + data


def frame(byte1, body):
    return bytes([byte1]) + varint(len(body)) + body


def props(*items):
    body = b"".join(items)
    return varint(len(body)) + body


def connect(level, client_id, user="1", password="pw", keep_alive=60, clean=True,
            will=None, properties=b""):
    flags = 0xC0 | (0x02 if clean else 0)
    payload = s(client_id)
    if will:
        topic, message = will
        flags |= 0x04 | (1 << 3)  # will, will QoS 1
        if level == 5:
            payload += props(b"\x18" + struct.pack(">I", 5))  # will delay
        payload += s(topic) + s(message)
    payload += s(user) + s(password)
    body = s("MQTT") + bytes([level, flags]) + struct.pack(">H", keep_alive)
    if level == 5:
        body += props(properties)
    return frame(0x10, body + payload)


def subscribe(level, pkid, filters, properties=b""):
    body = struct.pack(">H", pkid)
    if level == 5:
        body += props(properties)
    for f, qos in filters:
        body += s(f) + bytes([qos])
    return frame(0x82, body)


def unsubscribe(level, pkid, filters):
    body = struct.pack(">H", pkid)
    if level == 5:
        body += props()
    return frame(0xA2, body + b"".join(s(f) for f in filters))


def publish(level, topic, payload, qos=0, pkid=1, properties=b"", retain=False, dup=False):
    body = s(topic)
    if qos:
        body += struct.pack(">H", pkid)
    if level == 5:
        body += props(properties)
    return frame(0x30 | (dup << 3) | (qos << 1) | retain, body + payload)


def ack(kind, pkid, level=4, reason=None):
    byte1 = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    body = struct.pack(">H", pkid)
    if level == 5 and reason is not None:
        body += bytes([reason]) + props()
    return frame(byte1, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
DISCONNECT_V5 = frame(0xE0, b"\x00" + props(b"\x11" + struct.pack(">I", 0)))

RESPONSE = b"\x08" + s("users/1/replies/a") + b"\x09" + s(b"corr-1")
MSG = b'{"to":{"user":2},"client_msg_id":"m-1","body":{"text":"hi"}}'

CODEC = {
    "connect_v4": connect(4, "a"),
    "connect_v4_will": connect(4, "phone", will=("users/1/up/will", "gone")),
    "connect_v31": frame(0x10, s("MQIsdp") + bytes([3, 0xC2, 0, 60]) + s("a") + s("1") + s("pw")),
    "connect_v5": connect(5, "a", properties=b"\x11" + struct.pack(">I", 60)
                          + b"\x21" + struct.pack(">H", 10) + b"\x22" + struct.pack(">H", 5)),
    "connect_v5_will": connect(5, "", clean=True, will=("users/1/up/will", "gone")),
    "subscribe_v4": subscribe(4, 1, [("users/1/#", 1), ("users/2/#", 0), ("#", 2)]),
    "subscribe_v5": subscribe(5, 2, [("users/1/events", 1)], b"\x0b" + varint(7)),
    "unsubscribe_v4": unsubscribe(4, 3, ["users/1/#", "$SYS/#"]),
    "unsubscribe_v5": unsubscribe(5, 3, ["users/1/#"]),
    "publish_q0_v4": publish(4, "users/1/up/messages", MSG),
    "publish_q1_v4": publish(4, "users/2/events", b"x", qos=1, pkid=7),
    "publish_q2_v4": publish(4, "users/1/events", b"x", qos=2, pkid=8) + ack("pubrel", 8),
    "publish_q1_v5": publish(5, "users/1/up/messages", MSG, qos=1, pkid=9, properties=RESPONSE),
    "publish_q0_v5_alias": publish(5, "users/1/up/x", b"y", properties=b"\x23\x00\x01"),
    "acks_v4": ack("puback", 1) + ack("pubrec", 2) + ack("pubcomp", 2),
    "acks_v5": ack("puback", 1, 5, 0) + ack("pubrec", 2, 5, 0x10),
    "pingreq": PINGREQ,
    "disconnect_v4": DISCONNECT,
    "disconnect_v5": DISCONNECT_V5,
    "session_v4": connect(4, "a") + subscribe(4, 1, [("users/1/#", 1)])
    + publish(4, "users/1/up/messages", MSG, qos=1, pkid=2) + PINGREQ + DISCONNECT,
    "session_v5": connect(5, "b") + subscribe(5, 1, [("users/1/#", 1)])
    + publish(5, "users/1/up/messages", MSG, qos=1, pkid=2, properties=RESPONSE)
    + PINGREQ + DISCONNECT_V5,
}

# mode bits: 0 MQTT 5, 1 user 2, 2-3 client id, 4 persistent, 5 keep-alive, 6 will, 7 raw.
# control: bits 0-6 chunk size (0 = all at once), bit 7 push after SUBACK.
CONNECTION = {
    "v4_subscribe_push": (0x00, 0x80, subscribe(4, 1, [("users/1/#", 1)]) + PINGREQ
                          + ack("puback", 1) + ack("puback", 2) + DISCONNECT),
    "v5_subscribe_push": (0x21, 0x80, subscribe(5, 1, [("users/1/#", 1)], b"\x0b\x03")
                          + ack("puback", 1, 5, 0) + PINGREQ + DISCONNECT_V5),
    "v4_refused_publishes": (0x04, 0x03, publish(4, "users/2/events", b"x")
                             + publish(4, "users/2/events", b"x", qos=1, pkid=3)
                             + publish(4, "users/1/events", b"x", qos=2, pkid=4)
                             + ack("pubrel", 4) + PINGREQ),
    "v4_uplink": (0x08, 0x00, publish(4, "users/1/up/messages", MSG, qos=1, pkid=5)
                  + publish(4, "users/1/up/messages", MSG, qos=2, pkid=6) + ack("pubrel", 6)),
    "v5_uplink_response": (0x45, 0x80, subscribe(5, 1, [("users/1/replies/#", 1)])
                           + publish(5, "users/1/up/messages", MSG, qos=1, pkid=2,
                                     properties=RESPONSE) + ack("puback", 1, 5, 0)),
    "v4_hostile_subscribe": (0x32, 0x00, subscribe(4, 1, [("#", 0), ("users/+/#", 1),
                                                         ("$share/g/users/1/#", 1),
                                                         ("users/2/#", 1), ("users/1/#", 2)])
                             + unsubscribe(4, 2, ["users/1/#", "#"])),
    "v4_second_connect": (0x00, 0x00, connect(4, "a")),
    "v5_persistent": (0x15, 0x10, subscribe(5, 1, [("users/1/events", 1)]) + DISCONNECT_V5),
    "raw_connect_refused": (0x80, 0x00, connect(4, "a")),
    "raw_connect_v5_refused": (0x80, 0x02, connect(5, "z", user="2")),
    "raw_http": (0x80, 0x00, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"),
    "raw_mqtt31": (0x80, 0x00, CODEC["connect_v31"]),
}


def main():
    for name, data in CODEC.items():
        write("codec", name, data)
    for name, (mode, control, data) in CONNECTION.items():
        write("connection", name, bytes([mode, control]) + data)


def write(target, name, data):
    path = HERE / "corpus" / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


if __name__ == "__main__":
    main()
