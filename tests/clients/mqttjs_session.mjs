#!/usr/bin/env node
// A persistent MQTT session with MQTT.js over WebSocket, for
// tests/tests/mqtt_sessions.rs.
//
//   node mqttjs_session.mjs WS_URL USER TOKEN CLIENT_ID TOPIC subscribe
//   node mqttjs_session.mjs WS_URL USER TOKEN CLIENT_ID TOPIC receive N
//
// `subscribe` makes the session (clean: false) and its QoS 1 subscription,
// then disconnects. `receive N` resumes it without subscribing, prints each
// payload on a line, and disconnects after the N-th. MQTT.js is resolved
// from tests/browser/node_modules (NODE_PATH). Exits 1 on anything else, or
// after 20 s.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const mqtt = require('mqtt');
const [url, user, token, clientId, topic, mode, n] = process.argv.slice(2);
const want = Number(n ?? 0);
const fail = (why) => {
  console.error(why);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 20_000).unref();

const client = mqtt.connect(url, {
  clientId,
  clean: false,
  username: user,
  password: token,
  protocolVersion: 4,
  reconnectPeriod: 0,
});
let got = 0;
client.on('error', (e) => fail(`error: ${e.message}`));
client.on('message', (_topic, payload) => {
  process.stdout.write(`${payload.toString()}\n`);
  got += 1;
  // The PUBACK goes out right after this handler; end after it.
  if (got === want) setImmediate(() => client.end(false, () => process.exit(0)));
});
client.on('connect', (ack) => {
  if (mode === 'subscribe') {
    client.subscribe(topic, { qos: 1 }, (err) => {
      if (err) fail(`subscribe: ${err.message}`);
      client.end(false, () => process.exit(0));
    });
  } else if (!ack.sessionPresent) {
    fail('no session present');
  }
});
