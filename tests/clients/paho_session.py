#!/usr/bin/env python3
"""A persistent MQTT session with paho-mqtt, for tests/tests/mqtt_sessions.rs.

    paho_session.py HOST PORT USER TOKEN CLIENT_ID TOPIC subscribe
    paho_session.py HOST PORT USER TOKEN CLIENT_ID TOPIC receive N

`subscribe` makes the session (clean session 0) and its QoS 1 subscription,
then disconnects. `receive N` resumes it without subscribing, prints each
payload on a line, and disconnects after the N-th (acknowledged first).
Exits 1 when the session was not what the mode expects, or after 20 s.
"""
import sys
import time

import paho.mqtt.client as mqtt

host, port, user, token, client_id, topic, mode = sys.argv[1:8]
want = int(sys.argv[8]) if mode == "receive" else 0
state = {"connack": None, "subscribed": False, "got": 0}


def on_connect(client, userdata, flags, rc):
    state["connack"] = (flags.get("session present", 0), rc)


def on_subscribe(client, userdata, mid, granted):
    state["subscribed"] = True


def on_message(client, userdata, msg):
    print(msg.payload.decode(), flush=True)
    state["got"] += 1


client = mqtt.Client(client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311)
client.username_pw_set(user, token)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, int(port), keepalive=30)
deadline = time.time() + 20
while state["connack"] is None and time.time() < deadline:
    client.loop(timeout=0.1)
present, rc = state["connack"] or (None, None)
if rc != 0:
    sys.exit(f"CONNACK {rc}")
if mode == "subscribe":
    client.subscribe(topic, qos=1)
    while not state["subscribed"] and time.time() < deadline:
        client.loop(timeout=0.1)
else:
    if present != 1:
        sys.exit("no session present")
    # Each loop() handles a packet whole: the message callback, then its
    # PUBACK; so after the N-th, everything received is acknowledged.
    while state["got"] < want and time.time() < deadline:
        client.loop(timeout=0.1)
    if state["got"] < want:
        sys.exit(f"only {state['got']} of {want} messages")
client.disconnect()
client.loop(timeout=0.1)
