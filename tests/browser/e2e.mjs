#!/usr/bin/env node
// End-to-end test of the mqchat web client (client-sdk/web/index.html and the
// JS SDK it imports) in headless Chromium, against a running chatd.
//
//   node e2e.mjs BASE_URL USER1 PASS1 USER2 PASS2
//
// The two users must exist and be friends. chatd must serve MQTT.js
// (--web-vendor-dir node_modules/mqtt/dist). Environment:
//   CHROMIUM        browser binary (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where to save user1.png / user2.png at the end (and on failure)
//   E2E_TIMEOUT_MS  overall limit (default 60000)
//
// Exit code 0 when every check passed; 1 with a message on the first failure.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [BASE, USER1, PASS1, USER2, PASS2] = process.argv.slice(2);
if (!BASE || !USER1 || !PASS1 || !USER2 || !PASS2) {
  console.error('usage: node e2e.mjs BASE_URL USER1 PASS1 USER2 PASS2');
  process.exit(64);
}
// USER2's display name, if browser.rs gave them one (it gives one that
// impersonates USER1): the page must show USER2's username next to it.
const DISPLAY2 = process.env.DISPLAY2 ?? '';
const SHOWN2 = DISPLAY2 && DISPLAY2 !== USER2 ? `${DISPLAY2} (@${USER2})` : USER2;
const OVERALL_MS = Number(process.env.E2E_TIMEOUT_MS ?? 60_000);
const WAIT_MS = 10_000;
const started = Date.now();
const nonce = Math.random().toString(36).slice(2, 7);

function log(...args) {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[e2e ${t}s]`, ...args);
}

/** @type {import('playwright-core').Browser | null} */
let browser = null;
/** @type {{name: string, page: import('playwright-core').Page, logs: string[]}[]} */
const users = [];

async function screenshots(suffix = '') {
  const dir = process.env.SCREENSHOT_DIR;
  if (!dir) return;
  try {
    mkdirSync(dir, { recursive: true });
    for (const [i, u] of users.entries()) {
      const path = join(dir, `user${i + 1}${suffix}.png`);
      await u.page.screenshot({ path, timeout: 5_000 });
      log(`screenshot ${path}`);
    }
  } catch (err) {
    log(`screenshot failed: ${err.message}`);
  }
}

let failing = false;
async function fail(message) {
  if (failing) return;
  failing = true;
  console.error(`[e2e] FAIL: ${message}`);
  for (const u of users) {
    if (u.logs.length) console.error(`[e2e] last browser messages of ${u.name}:\n  ${u.logs.slice(-15).join('\n  ')}`);
  }
  await screenshots('-failure');
  await browser?.close().catch(() => {});
  process.exit(1);
}

const overall = setTimeout(() => fail(`overall timeout of ${OVERALL_MS} ms exceeded`), OVERALL_MS);

let currentStep = '';
async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  log(`… ${name}`);
  await fn();
  log(`ok ${name} (${Date.now() - t0} ms)`);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** @param {import('playwright-core').Page} page */
const byTestId = (page, id) => page.locator(`[data-testid="${id}"]`);

/** Opens the page and logs in through the form; resolves once the event stream is live. */
async function login(u, username, password) {
  const { page } = u;
  await page.goto(BASE, { waitUntil: 'domcontentloaded' });
  await byTestId(page, 'login-username').fill(username);
  await byTestId(page, 'login-password').fill(password);
  await byTestId(page, 'login-submit').click();
  await Promise.race([
    byTestId(page, 'app-view').waitFor({ state: 'visible', timeout: WAIT_MS }),
    page.waitForFunction(() => document.querySelector('[data-testid="login-error"]')?.textContent, null, { timeout: WAIT_MS })
      .then(async () => { throw new Error(`login of ${username} failed: ${await byTestId(page, 'login-error').textContent()}`); }),
  ]);
  const me = (await byTestId(page, 'me-name').textContent())?.trim();
  const shown = username === USER2 ? SHOWN2 : username;
  check(me === shown, `me-name shows ${JSON.stringify(me)}, expected ${shown}`);
  await page.locator('[data-testid="connection-state"][data-state="live"]').waitFor({ timeout: WAIT_MS });
}

/** The messages of the open conversation: [{seq, id, text, mine}], in page order. */
async function messagesOf(page) {
  return page.$$eval('[data-testid="message-list"] [data-testid="message"]', (els) => els.map((el) => ({
    seq: Number(el.dataset.seq),
    id: Number(el.dataset.messageId),
    mine: el.dataset.mine === 'true',
    text: el.querySelector('[data-testid="message-text"]')?.textContent ?? '',
  })));
}

/** Waits until the open conversation shows a (stored, not pending) message with this text. */
async function waitForMessage(page, text) {
  await page.locator('[data-testid="message-list"] [data-testid="message"] [data-testid="message-text"]', { hasText: text })
    .first().waitFor({ timeout: WAIT_MS });
}

/** Types and sends a message in the open conversation. */
async function send(page, text) {
  await byTestId(page, 'message-input').fill(text);
  await byTestId(page, 'message-input').press('Enter');
}

/** Checks that both pages show exactly `expected` texts (those with the nonce), in order, no duplicates. */
async function checkSameOrder(pages, expectedTexts, what) {
  const lists = [];
  for (const page of pages) {
    await page.waitForFunction(
      ({ n, tag }) => {
        const els = [...document.querySelectorAll('[data-testid="message-list"] [data-testid="message"]')];
        const pending = document.querySelectorAll('[data-testid="message-list"] [data-testid="message-pending"]').length;
        return pending === 0 && els.filter((el) => el.textContent.includes(tag)).length >= n;
      },
      { n: expectedTexts.length, tag: nonce },
      { timeout: WAIT_MS },
    );
    const all = await messagesOf(page);
    const seqs = all.map((m) => m.seq);
    const ids = all.map((m) => m.id);
    check(new Set(ids).size === ids.length, `${what}: duplicate message ids on a page: ${ids}`);
    check(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `${what}: seqs not increasing: ${seqs}`);
    const mineTexts = all.filter((m) => m.text.includes(nonce));
    lists.push(mineTexts);
  }
  const [a, b] = lists;
  const textsA = a.map((m) => m.text);
  const textsB = b.map((m) => m.text);
  check(JSON.stringify(textsA) === JSON.stringify(textsB), `${what}: the pages differ:\n  ${textsA.join(' | ')}\n  ${textsB.join(' | ')}`);
  check(JSON.stringify(a.map((m) => m.seq)) === JSON.stringify(b.map((m) => m.seq)), `${what}: seqs differ between pages`);
  const sortedExpected = [...expectedTexts].sort();
  check(JSON.stringify([...textsA].sort()) === JSON.stringify(sortedExpected),
    `${what}: expected ${expectedTexts.length} messages ${JSON.stringify(sortedExpected)}, got ${JSON.stringify(textsA)}`);
  // Messages one page sent one after the other keep that order.
  for (const author of [USER1, USER2]) {
    const sent = expectedTexts.filter((t) => t.startsWith(author + ':'));
    const shown = textsA.filter((t) => t.startsWith(author + ':'));
    check(JSON.stringify(sent) === JSON.stringify(shown), `${what}: ${author}'s messages out of order: ${shown}`);
  }
  return textsA;
}

async function main() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  log(`chromium ${executablePath}, base ${BASE}, users ${USER1} / ${USER2}, nonce ${nonce}`);
  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  for (const name of [USER1, USER2]) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    const u = { name, page, logs: [] };
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') u.logs.push(`console.${msg.type()}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => u.logs.push(`pageerror: ${err.message}`));
    users.push(u);
  }
  const [u1, u2] = users;
  const p1 = u1.page;
  const p2 = u2.page;
  const friend = (page, username) => page.locator(`[data-testid="friend-item"][data-username="${username}"]`);
  const directConv = (page, username) => page.locator(`[data-testid="conversation-item"][data-kind="direct"][data-peer-username="${username}"]`);

  await step(`${USER1} logs in through the page`, () => login(u1, USER1, PASS1));

  await step(`${USER1} sees ${USER2} in the friend list, offline`, async () => {
    await friend(p1, USER2).waitFor();
    const listed = (await friend(p1, USER2).textContent())?.trim() ?? '';
    check(listed.includes(SHOWN2), `${USER2} is listed as ${JSON.stringify(listed)}, expected ${SHOWN2}`);
    // Presence going offline is debounced server-side (5 s by default): allow for a previous run.
    await p1.locator(`[data-testid="friend-item"][data-username="${USER2}"][data-online="false"]`).waitFor({ timeout: 8_000 })
      .catch(() => { throw new Error(`${USER2} is shown online before logging in`); });
  });

  await step(`${USER2} logs in; ${USER1} sees the presence dot turn online`, async () => {
    await login(u2, USER2, PASS2);
    await p1.locator(`[data-testid="friend-item"][data-username="${USER2}"][data-online="true"] [data-testid="presence-dot"][data-online="true"]`)
      .waitFor({ timeout: WAIT_MS });
    await p2.locator(`[data-testid="friend-item"][data-username="${USER1}"][data-online="true"]`).waitFor({ timeout: WAIT_MS });
  });

  const hello = `${USER1}: hello ${nonce}`;
  await step(`${USER1} messages ${USER2}; ${USER2} gets it with an unread badge`, async () => {
    await friend(p1, USER2).click();
    await byTestId(p1, 'chat-view').waitFor();
    const title = (await byTestId(p1, 'chat-title').textContent())?.trim();
    check(title === SHOWN2, `chat title is ${JSON.stringify(title)}, expected ${SHOWN2}`);
    await send(p1, hello);
    await waitForMessage(p1, hello);
    const item = directConv(p2, USER1);
    await item.locator('[data-testid="conversation-preview"]', { hasText: hello }).waitFor();
    const badge = await item.locator('[data-testid="unread-badge"]').textContent({ timeout: WAIT_MS });
    check(Number(badge) >= 1, `unread badge shows ${JSON.stringify(badge)}`);
    log(`   ${USER2}'s unread badge: ${badge}`);
  });

  const reply = `${USER2}: hi back ${nonce}`;
  await step(`${USER2} opens the chat (badge clears), types (${USER1} sees typing), replies`, async () => {
    await directConv(p2, USER1).click();
    await waitForMessage(p2, hello);
    await directConv(p2, USER1).locator('[data-testid="unread-badge"]').waitFor({ state: 'detached' });
    await byTestId(p2, 'message-input').pressSequentially('hi', { delay: 20 });
    await p1.locator('[data-testid="typing-indicator"]', { hasText: 'typing' }).waitFor();
    const typing = await byTestId(p1, 'typing-indicator').textContent();
    check(typing.includes(USER2), `typing indicator says ${JSON.stringify(typing)}`);
    await send(p2, reply);
    await waitForMessage(p2, reply);
    await waitForMessage(p1, reply);
    // The open conversation on user1's page is read as it arrives: no badge.
    const badges = await directConv(p1, USER2).locator('[data-testid="unread-badge"]').count();
    check(badges === 0, `${USER1} has an unread badge on the open conversation`);
    // user1's message was read by user2: a read receipt arrives.
  });

  await step('a burst from both sides shows on both pages in the same order, no duplicates', async () => {
    const expected = [hello, reply];
    const sends = [];
    for (let i = 1; i <= 5; i++) {
      const a = `${USER1}: burst ${i} ${nonce}`;
      const b = `${USER2}: burst ${i} ${nonce}`;
      expected.push(a, b);
      sends.push(send(p1, a), send(p2, b));
      await Promise.all(sends.splice(0));
    }
    const texts = await checkSameOrder([p1, p2], expected, 'direct chat');
    log(`   ${texts.length} messages in the same order on both pages`);
  });

  await step(`${USER2}'s stream reconnects repeatedly while ${USER1} sends: nothing lost, nothing doubled`, async () => {
    const expected = (await messagesOf(p1)).filter((m) => m.text.includes(nonce)).map((m) => m.text);
    for (let i = 1; i <= 4; i++) {
      const text = `${USER1}: during reconnect ${i} ${nonce}`;
      expected.push(text);
      await p2.evaluate(() => window.mqchatApp.stream.reconnect());
      await send(p1, text);
    }
    await p2.locator('[data-testid="connection-state"][data-state="live"]').waitFor();
    await checkSameOrder([p1, p2], expected, 'after reconnects');
  });

  await step(`${USER1}'s SDK sends a batch, one send refused: ${USER2} sees the others once, in order`, async () => {
    const expected = (await messagesOf(p1)).filter((m) => m.text.includes(nonce)).map((m) => m.text);
    const texts = [1, 2, 3].map((i) => `${USER1}: batch ${i} ${nonce}`);
    const results = await p1.evaluate(async ({ peer, texts }) => {
      const { client } = window.mqchatApp;
      const to = { user: (await client.userByName(peer)).id };
      const sends = texts.map((text) => ({ to, body: { text } }));
      sends.splice(1, 0, { to: { user: 999999 }, body: { text: 'to no one' } });
      const answer = await client.sendBatch(sends);
      return answer.map((r) => (r.ok ? { ok: true, text: r.message.body.text } : { ok: false, status: r.error.status, code: r.error.code }));
    }, { peer: USER2, texts });
    check(JSON.stringify(results) === JSON.stringify([
      { ok: true, text: texts[0] },
      { ok: false, status: 404, code: 'not_found' },
      { ok: true, text: texts[1] },
      { ok: true, text: texts[2] },
    ]), `batch results: ${JSON.stringify(results)}`);
    expected.push(...texts);
    await checkSameOrder([p1, p2], expected, 'after a batch');
  });

  await step(`${USER1} sends ${USER2} a picture and a text file; ${USER2} sees the thumbnail, opens it, downloads the file`, async () => {
    // A 120x80 PNG drawn in the page, handed to the real file input.
    const W = 120;
    const H = 80;
    const pngBase64 = await p1.evaluate(async ({ w, hgt }) => {
      const canvas = new OffscreenCanvas(w, hgt);
      const g = canvas.getContext('2d');
      const grad = g.createLinearGradient(0, 0, w, hgt);
      grad.addColorStop(0, '#2563eb');
      grad.addColorStop(1, '#f59e0b');
      g.fillStyle = grad;
      g.fillRect(0, 0, w, hgt);
      g.fillStyle = '#fff';
      g.font = 'bold 28px sans-serif';
      g.fillText('mq', 38, 52);
      const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
      let bin = '';
      for (const b of bytes) bin += String.fromCharCode(b);
      return btoa(bin);
    }, { w: W, hgt: H });
    const imageName = `picture-${nonce}.png`;
    // Hold the upload back a moment, to see the page say it is uploading.
    let release;
    const held = new Promise((resolve) => (release = resolve));
    let passed;
    const gone = new Promise((resolve) => (passed = resolve));
    const isUpload = (url) => url.pathname === '/v1/files';
    await p1.route(isUpload, async (route) => {
      await held;
      await route.continue().finally(passed);
    }, { times: 1 });
    await byTestId(p1, 'attach-input').setInputFiles({ name: imageName, mimeType: 'image/png', buffer: Buffer.from(pngBase64, 'base64') });
    await p1.locator('[data-testid="message-pending"][data-uploading="true"] [data-testid="pending-image"]').waitFor();
    await p1.locator('[data-testid="attach-status"]', { hasText: `Uploading ${imageName}` }).waitFor();
    release();
    await gone;
    await p1.unroute(isUpload);
    await byTestId(p1, 'attach-status').waitFor({ state: 'hidden' });

    const loaded = (page, selector) => page.waitForFunction((sel) => {
      const el = document.querySelector(sel);
      return el && el.src.startsWith('blob:') && el.complete && el.naturalWidth > 0 ? el.naturalWidth : 0;
    }, selector, { timeout: WAIT_MS }).then((handle) => handle.jsonValue());
    const imageSel = `[data-testid="message-list"] [data-testid="message"] [data-testid="message-image"][data-name="${imageName}"]`;
    const w1 = await loaded(p1, imageSel);
    const thumbWidth = await loaded(p2, imageSel);
    const dims = await p2.locator(imageSel).evaluate((el) => [Number(el.dataset.width), Number(el.dataset.height)]);
    check(dims[0] === W && dims[1] === H, `${USER2}'s image message says ${dims.join('x')}, expected ${W}x${H}`);
    log(`   image shown on both pages (${USER1}: ${w1} px wide, ${USER2}'s thumbnail: ${thumbWidth} px wide)`);
    // Clicking it opens the full image.
    await p2.locator(imageSel).click();
    await byTestId(p2, 'image-viewer').waitFor();
    const full = await p2.waitForFunction(() => {
      const el = document.querySelector('[data-testid="image-viewer-img"]');
      return el?.dataset.full === 'true' && el.src.startsWith('blob:') && el.complete && el.naturalWidth > 0 ? [el.naturalWidth, el.naturalHeight] : null;
    }, null, { timeout: WAIT_MS }).then((handle) => handle.jsonValue());
    check(full[0] === W && full[1] === H, `the full image is ${full.join('x')}, expected ${W}x${H}`);
    await byTestId(p2, 'image-viewer-close').click();
    await byTestId(p2, 'image-viewer').waitFor({ state: 'hidden' });

    const fileName = `notes-${nonce}.txt`;
    const content = `notes from ${USER1} ${nonce}\n`;
    await byTestId(p1, 'attach-input').setInputFiles({ name: fileName, mimeType: 'text/plain', buffer: Buffer.from(content) });
    const fileLink = p2.locator(`[data-testid="message-list"] [data-testid="message"] [data-testid="message-file"][data-name="${fileName}"]`);
    await fileLink.waitFor();
    const shownName = (await fileLink.locator('[data-testid="message-file-name"]').textContent())?.trim();
    check(shownName === fileName, `${USER2}'s file message shows ${JSON.stringify(shownName)}, expected ${fileName}`);
    const size = (await fileLink.locator('[data-testid="message-file-size"]').textContent())?.trim();
    check(size?.startsWith(`${Buffer.byteLength(content)} B`), `${USER2}'s file message shows size ${JSON.stringify(size)}`);
    const [download] = await Promise.all([p2.waitForEvent('download', { timeout: WAIT_MS }), fileLink.click()]);
    check(download.suggestedFilename() === fileName, `the download is named ${JSON.stringify(download.suggestedFilename())}`);
    const got = readFileSync(await download.path(), 'utf8');
    check(got === content, `the downloaded file holds ${JSON.stringify(got)}`);
    await p1.locator(`[data-testid="message"] [data-testid="message-file"][data-name="${fileName}"]`).waitFor();
    await screenshots('-attachments');

    // An upload the server refuses (an empty file) is reported in the composer, and nothing is sent.
    await byTestId(p1, 'attach-input').setInputFiles({ name: `empty-${nonce}.txt`, mimeType: 'text/plain', buffer: Buffer.alloc(0) });
    await p1.locator('[data-testid="attach-error"]', { hasText: `empty-${nonce}.txt` }).waitFor();
    await p1.locator('[data-testid="message-pending"]').waitFor({ state: 'detached' });
    log(`   composer says: ${(await byTestId(p1, 'attach-error').textContent())?.replace('✕', '').trim()}`);
  });

  const groupName = `e2e ${nonce}`;
  const groupHello = `${USER1}: group hello ${nonce}`;
  const groupReply = `${USER2}: group reply ${nonce}`;
  await step(`${USER1} creates a group with ${USER2}; both talk in it`, async () => {
    await byTestId(p1, 'new-group-button').click();
    await byTestId(p1, 'group-name-input').fill(groupName);
    await p1.locator(`[data-testid="group-member-option"][data-username="${USER2}"] input`).check();
    await byTestId(p1, 'group-create-submit').click();
    await p1.locator('[data-testid="chat-title"]', { hasText: groupName }).waitFor();
    await p1.locator('[data-testid="message-system"]', { hasText: 'created the group' }).waitFor();
    await send(p1, groupHello);
    await waitForMessage(p1, groupHello);
    const item = p2.locator(`[data-testid="conversation-item"][data-kind="group"][data-title="${groupName}"]`);
    await item.locator('[data-testid="unread-badge"]').waitFor();
    await item.click();
    await waitForMessage(p2, groupHello);
    await p2.locator('[data-testid="message-system"]', { hasText: 'created the group' }).waitFor();
    await send(p2, groupReply);
    await waitForMessage(p1, groupReply);
    await checkSameOrder([p1, p2], [groupHello, groupReply], 'group chat');
  });

  const messageWith = (page, text) => page.locator('[data-testid="message-list"] [data-testid="message"]', {
    has: page.locator('[data-testid="message-text"]', { hasText: text }),
  });
  const reactionOn = (page, text, emoji, { count, mine }) =>
    messageWith(page, text).locator(`[data-testid="reaction"][data-emoji="${emoji}"][data-count="${count}"][data-mine="${mine}"]`);

  await step(`${USER1} reacts to ${USER2}'s message: both pages count it; ${USER2} adds one, ${USER1} takes theirs back`, async () => {
    await directConv(p1, USER2).click();
    await directConv(p2, USER1).click();
    await waitForMessage(p1, reply);
    await waitForMessage(p2, reply);
    const thumbs = '👍';
    await messageWith(p1, reply).hover();
    await messageWith(p1, reply).locator('[data-testid="react-button"]').click();
    await messageWith(p1, reply).locator(`[data-testid="reaction-option"][data-emoji="${thumbs}"]`).click();
    await reactionOn(p1, reply, thumbs, { count: 1, mine: true }).waitFor();
    await reactionOn(p2, reply, thumbs, { count: 1, mine: false }).waitFor();
    // Clicking someone else's reaction joins it.
    await reactionOn(p2, reply, thumbs, { count: 1, mine: false }).click();
    await reactionOn(p2, reply, thumbs, { count: 2, mine: true }).waitFor();
    await reactionOn(p1, reply, thumbs, { count: 2, mine: true }).waitFor();
    // Clicking one's own takes it back.
    await reactionOn(p1, reply, thumbs, { count: 2, mine: true }).click();
    await reactionOn(p1, reply, thumbs, { count: 1, mine: false }).waitFor();
    await reactionOn(p2, reply, thumbs, { count: 1, mine: true }).waitFor();
  });

  await step(`${USER2} pins ${USER1}'s message: both see it pinned and in the pin list; ${USER1} unpins it`, async () => {
    await messageWith(p2, hello).hover();
    await messageWith(p2, hello).locator('[data-testid="pin-button"]').click();
    await messageWith(p2, hello).locator('[data-testid="pinned-marker"]').waitFor();
    await messageWith(p1, hello).locator('[data-testid="pinned-marker"]').waitFor();
    await p1.locator('[data-testid="pins-count"]', { hasText: '1' }).waitFor();
    await byTestId(p1, 'pins-button').click();
    const pin = p1.locator('[data-testid="pins-panel"] [data-testid="pin-item"]');
    await pin.locator('[data-testid="pin-text"]', { hasText: hello }).waitFor();
    check(await pin.count() === 1, `${USER1}'s pin list has ${await pin.count()} pins, expected 1`);
    await screenshots('-pins');
    await pin.locator('[data-testid="pin-remove"]').click();
    await pin.waitFor({ state: 'detached' });
    await messageWith(p2, hello).locator('[data-testid="pinned-marker"]').waitFor({ state: 'detached' });
    await byTestId(p1, 'pins-button').click();
    await byTestId(p1, 'pins-panel').waitFor({ state: 'hidden' });
  });

  const menu = async (page, item) => {
    await byTestId(page, 'conversation-menu-button').click();
    await byTestId(page, item).click();
    await byTestId(page, 'conversation-menu').waitFor({ state: 'hidden' });
  };
  const comeback = `${USER1}: back from the archive ${nonce}`;
  await step(`${USER2} pins the chat to the top, mutes it, archives it; a new message brings it back`, async () => {
    const items = p2.locator('[data-testid="conversation-list"] [data-testid="conversation-item"]');
    // The group chat is the most recent; pinning the direct chat puts it first.
    await items.first().and(p2.locator('[data-kind="group"]')).waitFor();
    await menu(p2, 'menu-pin');
    await items.first().and(p2.locator(`[data-peer-username="${USER1}"][data-pinned="true"]`)).waitFor();
    await menu(p2, 'menu-mute-forever');
    await directConv(p2, USER1).and(p2.locator('[data-muted="true"]')).locator('[data-testid="muted-icon"]').waitFor();
    // Unmuted from another device (the SDK, beside the page): the page follows conversation.settings.
    await p2.evaluate(async (peer) => {
      const { client, state } = window.mqchatApp;
      const peerId = (await client.userByName(peer)).id;
      const conv = [...state.convs.values()].find((c) => c.kind === 'direct' && c.peerId === peerId);
      await client.updateConversationSettings(conv.id, { mutedUntil: null });
    }, USER1);
    await directConv(p2, USER1).and(p2.locator('[data-muted="false"]')).waitFor();
    check(await directConv(p2, USER1).locator('[data-testid="muted-icon"]').count() === 0, 'the muted icon stays after unmuting');

    await menu(p2, 'menu-archive');
    await directConv(p2, USER1).waitFor({ state: 'detached' });
    await p2.locator('[data-testid="archived-toggle"]', { hasText: '(1)' }).click();
    await directConv(p2, USER1).and(p2.locator('[data-archived="true"]')).waitFor();
    await screenshots('-archived');
    await byTestId(p2, 'archived-toggle').click();
    await directConv(p2, USER1).waitFor({ state: 'detached' });
    // A new message unarchives it.
    await send(p1, comeback);
    await directConv(p2, USER1).and(p2.locator('[data-archived="false"]'))
      .locator('[data-testid="conversation-preview"]', { hasText: comeback }).waitFor();
    await byTestId(p2, 'archived-toggle').waitFor({ state: 'hidden' });
  });

  await step(`${USER2} reloads the page: history comes back in order`, async () => {
    await p2.reload({ waitUntil: 'domcontentloaded' });
    await login(u2, USER2, PASS2);
    await directConv(p2, USER1).click();
    await waitForMessage(p2, reply);
    await directConv(p1, USER2).click();
    await waitForMessage(p1, reply);
    const expected = (await messagesOf(p1)).filter((m) => m.text.includes(nonce)).map((m) => m.text);
    await checkSameOrder([p1, p2], expected, 'history after reload');
  });

  const errors = users.flatMap((u) => u.logs.filter((l) => l.startsWith('pageerror')).map((l) => `${u.name}: ${l}`));
  check(errors.length === 0, `uncaught errors in the pages:\n  ${errors.join('\n  ')}`);

  await screenshots();
  await browser.close();
  clearTimeout(overall);
  log(`PASS (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

main().catch((err) => fail(`${currentStep}: ${err?.message ?? err}`));
