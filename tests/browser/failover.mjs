#!/usr/bin/env node
// The JS SDK (client-sdk/js/mqchat.js) failing over between two chatd nodes
// of one cluster, in Node with MQTT.js; driven by tests/tests/cluster_shared.rs.
//
//   node failover.mjs BASE_A BASE_B USER PASS FIRST THEN
//
// Logs in with both servers, streams, and prints READY once FIRST message
// events arrived (through node A). The driver then kills node A and writes a
// line to stdin; this script makes an HTTP call (which must move to node B)
// and waits for THEN more message events. It prints PASS when every event
// arrived once, with cursors 1..FIRST+THEN in order; exit code 1 otherwise.

import * as mqtt from 'mqtt';
import { createInterface } from 'node:readline';
import { Backoff, Client } from '../../client-sdk/js/mqchat.js';

const [BASE_A, BASE_B, USER, PASS, FIRST, THEN] = process.argv.slice(2);
const first = Number(FIRST);
const total = first + Number(THEN);
const timer = setTimeout(() => fail('timed out'), Number(process.env.FAILOVER_TIMEOUT_MS ?? 30_000));

function fail(why) {
  console.log(`FAIL: ${why}`);
  process.exit(1);
}

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

const client = await Client.login([BASE_A, BASE_B], USER, PASS, { mqtt, retryBackoff: new Backoff(50, 200) });
const stream = client.connect({ backoff: new Backoff(100, 500) });
const cursors = [];
let reached;
const arrived = (n) =>
  new Promise((resolve) => {
    reached = () => cursors.length >= n && resolve();
    reached();
  });
stream.addEventListener('message.created', (e) => {
  cursors.push(e.detail.cursor);
  reached?.();
});
stream.addEventListener('error', (e) => fail(`stream ended: ${e.detail?.message}`));

await arrived(first);
console.log(`READY on ${stream.url}`);
await nextLine();
// Node A is gone: this call must reach node B.
const me = await client.me();
if (me.username !== USER) fail(`me: ${JSON.stringify(me)}`);
if (client.baseUrl !== BASE_B.replace(/\/+$/, '')) fail(`HTTP still on ${client.baseUrl}`);
console.log('SENT?');
await arrived(total);
// Anything trailing would be a duplicate: give it a moment to show.
await new Promise((r) => setTimeout(r, 300));
const expected = Array.from({ length: total }, (_, i) => i + 1);
if (JSON.stringify(cursors) !== JSON.stringify(expected)) fail(`cursors ${cursors}`);
console.log(`PASS on ${stream.url}`);
clearTimeout(timer);
stream.close();
process.exit(0);
