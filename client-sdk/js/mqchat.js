// mqchat JS SDK: the HTTP uplink and the MQTT downlink of mqchat, for
// browsers (and Node 20+). One dependency-free ES module; MQTT.js is taken from
// the `mqtt` global that its browser bundle (`mqtt.min.js`) defines, or passed
// in as an option.
//
// SPDX-License-Identifier: Apache-2.0

/**
 * @module mqchat
 *
 * ```js
 * import { Client } from '/sdk/mqchat.js';
 *
 * const alice = await Client.login(location.origin, 'alice', 'correct horse');
 * const events = alice.connect();              // ws://<same host>/mqtt
 * events.addEventListener('message.created', (e) => console.log(e.detail.message));
 * events.addEventListener('presence', (e) => console.log(e.detail.user_id, e.detail.online));
 * await alice.sendText({ user: 2 }, 'hi bob');
 * ```
 *
 * - {@link Client} keeps the tokens fresh: it refreshes shortly before the
 *   access token expires and once on a 401 `token_expired` / `invalid_token`.
 *   Refresh tokens rotate (presenting a spent one ends the whole session), so
 *   refreshes are single-flight.
 * - Calls are retried after transient failures (network errors, timeouts,
 *   5xx, 408, 429) only where a repeat cannot change the outcome: reads, sends
 *   (deduplicated by their `client_msg_id`, generated once and reused on every
 *   retry), markers that only move forward, file uploads (a repeat at worst
 *   leaves an unreferenced copy, which the server deletes). Calls whose repeat would do the
 *   work twice (create a group, answer a friend request...) are retried only
 *   after a 429, which the server refused unprocessed.
 * - {@link EventStream} (from {@link Client#connect}) is gap-free,
 *   duplicate-free and in cursor order across disconnects: on every
 *   (re)connect it subscribes `users/{id}/#`, waits for the SUBACK and syncs
 *   from its last cursor; a push with the next cursor is delivered at once, an
 *   older one dropped, and a jump triggers a sync. Presence and typing pushes
 *   have no cursor and are delivered as they arrive.
 */

/** Largest `limit` the server accepts on `GET /v1/sync`. */
export const MAX_SYNC_LIMIT = 500;
/** Most users the server answers in one `GET /v1/presence`. */
export const MAX_PRESENCE_BATCH = 200;
/** Longest `client_msg_id` the server accepts. */
export const MAX_CLIENT_MSG_ID_LEN = 64;
/** Most sends the server takes in one `POST /v1/messages/batch`. */
export const MAX_BATCH_SENDS = 100;

/** Refresh at most this long before expiry (a fifth of the lifetime for short-lived tokens). */
const MAX_REFRESH_MARGIN_MS = 60_000;
/** CONNACK codes that mean "these credentials are refused": 3.1.1 (4, 5) and MQTT 5 (0x86, 0x87). */
const MQTT_REFUSED = new Set([4, 5, 0x86, 0x87]);

// ---------------------------------------------------------------------------
// Types (JSDoc only; the shapes are in schemas/mqchat.schema.json)

/**
 * @typedef {object} User
 * @property {number} id
 * @property {string} username
 * @property {?string} display_name
 * @property {number} created_at Unix ms
 */
/**
 * Who a message is for: `{user: ID}` or `{group: ID}`.
 * @typedef {{user: number} | {group: number}} Recipient
 */
/**
 * @typedef {object} Message
 * @property {number} id
 * @property {number} conversation_id
 * @property {number} seq 1, 2, 3... per conversation, no gaps
 * @property {number} sender_id
 * @property {Recipient} to
 * @property {'user'|'system'} kind
 * @property {string} client_msg_id
 * @property {object} body `{text}` for text; `{image: {...}}` / `{file: {...}}` (and maybe `text`) for attachments ({@link attachmentOf}); `{system: {...}}` for group changes; `{}` once recalled or expired
 * @property {number} sent_at
 * @property {?number} edited_at
 * @property {?number} recalled_at
 * @property {number} [reply_to] a reply: the message it answers
 * @property {Quote} [quote] a reply: the message it answers, as it reads now
 * @property {Mentions} [mentions] whom the message mentions
 * @property {ForwardedFrom} [forwarded_from] a forwarded copy: where it came from
 * @property {number} [expires_at] Unix ms when it disappears (sent while the conversation had a `message_ttl_seconds`); see {@link isExpired}
 * @property {Reaction[]} [reactions] counted per emoji (history, sync, pins; absent when none)
 */
/**
 * One emoji on a message.
 * @typedef {object} Reaction
 * @property {string} emoji fully qualified
 * @property {number} count
 * @property {boolean} mine whether this user reacted so
 */
/**
 * A pinned message ({@link Client#pins}).
 * @typedef {object} Pin
 * @property {Message} message
 * @property {number} pinned_by
 * @property {number} pinned_at Unix ms
 */
/**
 * This user's own settings of a conversation.
 * @typedef {object} ConversationSettings
 * @property {number|'forever'|null} muted_until Unix ms or `'forever'` while muted, else null; muted: no offline push unless mentioned, unread still counts
 * @property {boolean} pinned kept at the top of the list
 * @property {boolean} archived left out of the list until a new message arrives
 */
/**
 * @typedef {number[] | 'all'} Mentions user ids of members, or everyone
 */

/**
 * A reply's quote, read when the reply is read: once the target is recalled,
 * expired or gone, `removed` is true and `snippet` null.
 * @typedef {object} Quote
 * @property {number} id the message replied to
 * @property {?number} sender_id null once it is gone
 * @property {?string} snippet at most 100 characters of its text
 * @property {boolean} removed show a tombstone
 */

/**
 * Where a forwarded copy came from (never the original's conversation or id).
 * @typedef {object} ForwardedFrom
 * @property {number} sender_id
 * @property {'direct'|'group'} conversation_kind
 * @property {number} sent_at
 */

/**
 * @typedef {object} Conversation
 * @property {number} id
 * @property {'direct'|'group'} kind
 * @property {?User} peer direct conversations
 * @property {?{id: number, name: string}} group group conversations
 * @property {number} last_seq
 * @property {number} read_seq
 * @property {number} unread_count
 * @property {number} mention_count of the unread messages, those that mention the user
 * @property {?Message} last_message `null` if none, or it disappeared
 * @property {?number} message_ttl_seconds disappearing messages: seconds after `sent_at` that messages sent now disappear; `null`: off
 * @property {ConversationSettings} settings this user's own
 */
/**
 * @typedef {object} Friend
 * @property {User} user
 * @property {number} since
 * @property {boolean} online
 * @property {?number} last_seen
 */
/**
 * @typedef {object} FriendRequest
 * @property {number} id
 * @property {number} from
 * @property {number} to
 * @property {?string} note
 * @property {'pending'|'accepted'|'rejected'|'cancelled'|'expired'} status
 * @property {number} created_at
 * @property {number} expires_at
 */
/**
 * @typedef {object} Group
 * @property {number} id
 * @property {number} conversation_id
 * @property {string} name
 * @property {number} owner_id
 * @property {number} created_at
 * @property {{user_id: number, role: 'owner'|'admin'|'member'}[]} members
 * @property {'admins'|'members'} who_can_pin
 * @property {'admins'|'members'} mention_all who may mention `"all"`
 */
/**
 * @typedef {object} Presence
 * @property {number} user_id
 * @property {boolean} online
 * @property {?number} last_seen
 */
/**
 * @typedef {object} SyncPage
 * @property {MqchatEvent[]} events
 * @property {number} cursor pass as `after` next time
 * @property {boolean} has_more
 */
/**
 * An event of the stream. Inbox events carry a `cursor` and a `type` among
 * `message.created`, `message.edited`, `message.recalled`, `message.expired`
 * (`{message}`, the tombstone of a message that disappeared: drop it),
 * `message.hidden`, `receipt.read`, `receipt.delivered`, `conversation.read`,
 * `conversation.message_ttl` (`{conversation_id, user_id, message_ttl_seconds}`:
 * the disappearing-messages timer changed), `friend.request`, `friend.added`,
 * `friend.removed`, `block.updated`, `reaction.added` and
 * `reaction.removed` (`{conversation_id, message_id, user_id, emoji, count}`),
 * `pin.added` and `pin.removed` (`{conversation_id, message_id, user_id}`),
 * `conversation.settings` (`{conversation_id, settings}`) (types this SDK does not
 * know are passed on too). Ephemeral events have no cursor: `presence`
 * (`{user_id, online, last_seen}`) and `typing` (`{conversation_id, user_id}`).
 * A `message.created` that mentions the user (by id or `"all"`) carries
 * `mentioned: true`.
 * @typedef {{type: string, cursor?: number} & Record<string, any>} MqchatEvent
 */
/**
 * An uploaded file, as `POST /v1/files` answers it ({@link Client#uploadFile}).
 * @typedef {object} FileInfo
 * @property {string} id 32 hex characters
 * @property {number} size bytes
 * @property {string} content_type sniffed by the server from the bytes (`application/octet-stream` when unknown)
 * @property {?string} name
 * @property {string} sha256
 * @property {number} created_at Unix ms
 * @property {?number} width images the server could decode
 * @property {?number} height
 * @property {?string} thumbnail_id a PNG at most 256 px on its longer side (images)
 */
/**
 * What an attachment message carries, read from its body by {@link attachmentOf}.
 * Image bodies are `{image: {id, name, width, height, thumbnail_id}}`, file
 * bodies `{file: {id, name, size, content_type}}`; either may have a `text`.
 * @typedef {object} Attachment
 * @property {'image'|'file'} kind
 * @property {string} id
 * @property {?string} name
 * @property {?number} size
 * @property {?string} content_type
 * @property {?number} width
 * @property {?number} height
 * @property {?string} thumbnail_id
 * @property {?string} text the caption, if any
 */
/**
 * @typedef {object} LoginGrant
 * @property {string} access_token
 * @property {string} refresh_token
 * @property {number} expires_in seconds
 * @property {string} token_type
 * @property {User} user
 */

// ---------------------------------------------------------------------------
// Errors

/**
 * Every error this SDK throws or reports.
 *
 * `status` is the HTTP status (0 when there was no answer), `code` the
 * server's error code (`schemas/errors.md`) or one of the SDK's own:
 * `network`, `timeout`, `session_expired`, `logged_out`, `invalid_input`,
 * `decode`, `mqtt`, `mqtt_refused`, `mqtt_closed`, `subscribe_refused`,
 * `no_mqtt`.
 */
export class MqchatError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, code?: string, retryAfter?: ?number, cause?: any}} [info]
   */
  constructor(message, info = {}) {
    super(message, info.cause !== undefined ? { cause: info.cause } : undefined);
    this.name = 'MqchatError';
    /** @type {number} */
    this.status = info.status ?? 0;
    /** @type {string} */
    this.code = info.code ?? 'unknown';
    /** Seconds the server asked to wait (429), if it said. @type {?number} */
    this.retryAfter = info.retryAfter ?? null;
  }

  /** Worth trying again later: network trouble, timeouts, 5xx, 408, 429, MQTT connection trouble. */
  get transient() {
    // A used-up upload quota comes back in hours (the daily one) or never
    // by waiting (the total one): not worth a retry.
    if (this.code === 'upload_quota_exceeded') return false;
    if (this.status) {
      return this.status >= 500 || this.status === 408 || this.status === 429;
    }
    return ['network', 'timeout', 'mqtt', 'mqtt_closed', 'subscribe_refused'].includes(this.code);
  }

  /** The request provably did nothing: the server refused it unprocessed (429). */
  get neverReachedServer() {
    return this.status === 429;
  }

  /** A 401 that a fresh access token cures. */
  get staleToken() {
    return this.status === 401 && (this.code === 'token_expired' || this.code === 'invalid_token');
  }

  /** The login session is over (expired, revoked, logged out): log in again. */
  get sessionEnded() {
    return this.code === 'session_expired' || this.code === 'logged_out';
  }
}

/** @param {any} err */
function isTransient(err) {
  return err instanceof MqchatError && err.transient;
}

// ---------------------------------------------------------------------------
// Small helpers

/** @param {number} len */
function randomId(len) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = new Uint8Array(len);
  globalThis.crypto.getRandomValues(bytes);
  let out = '';
  // 62 * 4 = 248: rejecting bytes >= 248 keeps the choice uniform.
  for (let i = 0; out.length < len; i++) {
    if (i === bytes.length) {
      globalThis.crypto.getRandomValues(bytes);
      i = 0;
    }
    if (bytes[i] < 248) out += alphabet[bytes[i] % 62];
  }
  return out;
}

/**
 * A fresh random `client_msg_id` (32 alphanumeric characters). Generate one per
 * logical message and keep it for every retry of that message.
 * @returns {string}
 */
export function newClientMsgId() {
  return randomId(32);
}

/** `id`, or a new one when none is given; throws for one the server would refuse. */
function checkedClientMsgId(id) {
  const checked = id ?? newClientMsgId();
  if (typeof checked !== 'string' || checked.length < 1 || [...checked].length > MAX_CLIENT_MSG_ID_LEN) {
    throw new MqchatError(`client_msg_id must be 1..=${MAX_CLIENT_MSG_ID_LEN} characters`, { code: 'invalid_input' });
  }
  return checked;
}

/** Drops `null` / `undefined` members. @param {Record<string, any>} obj */
function compact(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined && v !== null));
}

/** @param {Record<string, any>} body @param {string} [text] */
function withText(body, text) {
  if (text !== undefined && text !== null && text !== '') body.text = text;
  return body;
}

/** @param {any} info @returns {FileInfo} */
function checkFileInfo(info) {
  if (!info || typeof info.id !== 'string' || !info.id) {
    throw new MqchatError('expected a FileInfo (what uploadFile answers)', { code: 'invalid_input' });
  }
  return info;
}

/** @param {FileInfo} info */
function isImageInfo(info) {
  return String(info?.content_type ?? '').startsWith('image/') && !!info.width && !!info.height;
}

/**
 * Whether a message has disappeared at `now` (Unix ms, default the local
 * clock): it carries `expires_at` and that time has come. The server shows
 * it no more past then and sends `message.expired`; hide it too.
 * @param {Message} message @param {number} [now] @returns {boolean}
 */
export function isExpired(message, now = Date.now()) {
  return typeof message?.expires_at === 'number' && message.expires_at <= now;
}

/**
 * The attachment a message body references, or `null` (text, system,
 * recalled messages). Reads `{image: {...}}` and `{file: {...}}` bodies.
 * @param {Message | object} messageOrBody a message, or its `body`
 * @returns {?Attachment}
 */
export function attachmentOf(messageOrBody) {
  const m = /** @type {any} */ (messageOrBody);
  const body = m && typeof m === 'object' && 'body' in m && 'seq' in m ? m.body : m;
  if (!body || typeof body !== 'object') return null;
  for (const kind of /** @type {const} */ (['image', 'file'])) {
    const a = body[kind];
    if (a && typeof a === 'object' && typeof a.id === 'string') {
      const num = (/** @type {any} */ v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
      const str = (/** @type {any} */ v) => (typeof v === 'string' && v ? v : null);
      return {
        kind,
        id: a.id,
        name: str(a.name),
        size: num(a.size),
        content_type: str(a.content_type),
        width: num(a.width),
        height: num(a.height),
        thumbnail_id: str(a.thumbnail_id),
        text: typeof body.text === 'string' ? body.text : null,
      };
    }
  }
  return null;
}

/**
 * @param {number} ms
 * @param {AbortSignal} [signal] ends the wait early (resolves, does not throw)
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Exponential backoff, capped, with "equal jitter": each delay is a random
 * point in the upper half of the exponential step, so a crowd of clients that
 * lost the server together does not come back together.
 */
export class Backoff {
  /**
   * @param {number} [initialMs] ceiling of the first delay (default 500 ms)
   * @param {number} [maxMs] ceiling of every delay (default 30 s)
   */
  constructor(initialMs = 500, maxMs = 30_000) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
  }

  /**
   * The delay before retry number `attempt` (0-based), in ms.
   * @param {number} attempt
   * @param {number} [jitter] in [0, 1]; random by default
   */
  delay(attempt, jitter = Math.random()) {
    const ceiling = Math.min(this.initialMs * 2 ** Math.min(attempt, 30), this.maxMs);
    const half = ceiling / 2;
    return Math.min(half + half * Math.min(Math.max(jitter, 0), 1), ceiling);
  }
}

/** @param {string} baseUrl */
function trimBase(baseUrl) {
  if (!baseUrl && globalThis.location) return globalThis.location.origin;
  return String(baseUrl).replace(/\/+$/, '');
}

/**
 * The servers to use: one base URL, or several (nodes of one cluster, or one
 * load balancer) in the order to try them.
 * @param {string | string[]} baseUrl
 * @returns {string[]}
 */
function serverList(baseUrl) {
  const list = (Array.isArray(baseUrl) ? baseUrl : [baseUrl]).map(trimBase);
  if (list.length === 0) throw new MqchatError('no server given', { code: 'invalid_input' });
  return [...new Set(list)];
}

/**
 * {@link request} to the first of `servers` that can be reached: a network
 * failure (refused, unreachable) moves on to the next. For calls made before
 * there is a session (login, register, resume).
 * @param {string[]} servers
 * @param {string} method
 * @param {string} path
 * @param {RequestOptions} opts
 * @returns {Promise<{server: string, answer: any}>}
 */
async function requestAny(servers, method, path, opts) {
  let lastErr;
  for (const server of servers) {
    try {
      return { server, answer: await request(server, method, path, opts) };
    } catch (err) {
      if (!(err instanceof MqchatError) || err.code !== 'network') throw err;
      lastErr = err;
    }
  }
  throw lastErr;
}

/**
 * `servers` starting at `first`, the rest in their order after it.
 * @param {string[]} servers
 * @param {string} first
 */
function rotateTo(servers, first) {
  const i = Math.max(servers.indexOf(first), 0);
  return [...servers.slice(i), ...servers.slice(0, i)];
}

/**
 * The WebSocket MQTT endpoint chatd serves next to its HTTP API:
 * `http://HOST:PORT` → `ws://HOST:PORT/mqtt` (`https` → `wss`).
 * @param {string} baseUrl
 * @returns {string}
 */
export function websocketUrlFor(baseUrl) {
  const url = new URL(trimBase(baseUrl) + '/mqtt');
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

/**
 * `fetch` over `XMLHttpRequest`, the only browser API that reports upload
 * progress. Same contract as `fetch` for what {@link request} uses: resolves a
 * `Response` (body as a Blob) for any HTTP answer, rejects on network failure
 * or abort.
 * @param {string} url
 * @param {{method: string, headers: Record<string, string>, body?: any, signal?: AbortSignal}} init
 * @param {(sent: number, total: ?number) => void} onUploadProgress
 * @returns {Promise<Response>}
 */
function xhrFetch(url, init, onUploadProgress) {
  return new Promise((resolve, reject) => {
    const abortError = () => new DOMException('aborted', 'AbortError');
    if (init.signal?.aborted) return reject(abortError());
    const xhr = new XMLHttpRequest();
    xhr.open(init.method, url);
    for (const [k, v] of Object.entries(init.headers)) xhr.setRequestHeader(k, v);
    xhr.responseType = 'blob';
    const onAbort = () => xhr.abort();
    init.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => init.signal?.removeEventListener('abort', onAbort);
    xhr.upload.onprogress = (e) => onUploadProgress(e.loaded, e.lengthComputable ? e.total : null);
    xhr.onload = () => {
      cleanup();
      const headers = new Headers();
      for (const line of xhr.getAllResponseHeaders().split(/\r?\n/)) {
        const i = line.indexOf(':');
        try {
          if (i > 0) headers.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
        } catch {
          // a header the Headers class refuses: not one this SDK reads
        }
      }
      const noBody = xhr.status === 204 || xhr.status === 205 || xhr.status === 304;
      try {
        resolve(new Response(noBody ? null : xhr.response, { status: xhr.status, headers }));
      } catch (err) {
        reject(err);
      }
    };
    xhr.onerror = () => {
      cleanup();
      reject(new TypeError('network error'));
    };
    xhr.onabort = () => {
      cleanup();
      reject(abortError());
    };
    xhr.send(init.body ?? null);
  });
}

/** Calls an application callback; its exceptions must not break a transfer. */
function notify(fn, ...args) {
  try {
    fn?.(...args);
  } catch (err) {
    setTimeout(() => {
      throw err;
    });
  }
}

/**
 * Options of one HTTP request ({@link request}).
 * @typedef {object} RequestOptions
 * @property {Record<string, any>} [query]
 * @property {any} [body] sent as JSON
 * @property {Blob | ArrayBuffer | ArrayBufferView} [raw] sent as is (instead of `body`)
 * @property {'json'|'blob'} [responseType] how to read a successful answer (default JSON)
 * @property {string} [token]
 * @property {number} [timeoutMs] default 30 s
 * @property {boolean} [idleTimeout] `timeoutMs` is the longest time without progress (bytes sent or received), not the limit of the whole request
 * @property {(sent: number, total: ?number) => void} [onUploadProgress] bytes of the body sent so far; uses `XMLHttpRequest` where there is one (and no custom `fetch`), else is called once the body is sent
 * @property {(received: number, total: ?number) => void} [onDownloadProgress] bytes of a `blob` answer received so far
 * @property {AbortSignal} [signal]
 * @property {typeof fetch} [fetch]
 */

/**
 * One HTTP request to chatd, no auth logic, no retries.
 * @param {string} baseUrl
 * @param {string} method
 * @param {string} path
 * @param {RequestOptions} [opts]
 * @returns {Promise<any>} the parsed JSON answer (null for 204), or a Blob with `responseType: 'blob'`
 */
async function request(baseUrl, method, path, opts = {}) {
  let url = baseUrl + path;
  if (opts.query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) {
      if (v !== undefined && v !== null) params.set(k, String(v));
    }
    const qs = params.toString();
    if (qs) url += '?' + qs;
  }
  /** @type {Record<string, string>} */
  const headers = { accept: opts.responseType === 'blob' ? '*/*' : 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body;
  if (opts.raw !== undefined) {
    // The server sniffs the type from the bytes; this header is only a hint.
    headers['content-type'] = (typeof Blob !== 'undefined' && opts.raw instanceof Blob && opts.raw.type) || 'application/octet-stream';
    body = opts.raw;
  } else if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const controller = new AbortController();
  let timedOut = false;
  let timer;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, opts.timeoutMs ?? 30_000);
  };
  arm();
  const progressed = opts.idleTimeout ? arm : () => {};
  const onAbort = () => controller.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const useXhr = !!opts.onUploadProgress && !opts.fetch && typeof globalThis.XMLHttpRequest === 'function';
  const doFetch = opts.fetch ?? globalThis.fetch;
  let res;
  let text;
  let blob;
  try {
    if (opts.signal?.aborted) throw new Error('aborted');
    const init = { method, headers, body, signal: controller.signal };
    if (useXhr) {
      res = await xhrFetch(url, init, (sent, total) => {
        progressed();
        notify(opts.onUploadProgress, sent, total);
      });
    } else {
      res = await doFetch(url, init);
      if (opts.onUploadProgress && body !== undefined) {
        const size = body.size ?? body.byteLength ?? null;
        notify(opts.onUploadProgress, size ?? 0, size);
      }
    }
    if (opts.responseType === 'blob' && res.ok) {
      const total = Number(res.headers.get('content-length')) || null;
      const type = res.headers.get('content-type') ?? '';
      if (res.body && typeof res.body.getReader === 'function' && (opts.idleTimeout || opts.onDownloadProgress)) {
        const reader = res.body.getReader();
        const chunks = [];
        let received = 0;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          chunks.push(value);
          received += value.byteLength;
          progressed();
          notify(opts.onDownloadProgress, received, total);
        }
        blob = new Blob(chunks, { type });
      } else {
        blob = await res.blob();
        notify(opts.onDownloadProgress, blob.size, total);
      }
    } else {
      text = await res.text();
    }
  } catch (cause) {
    if (timedOut) {
      throw new MqchatError(`${method} ${path}: timed out`, { code: 'timeout', cause });
    }
    if (opts.signal?.aborted) {
      throw new MqchatError(`${method} ${path}: aborted`, { code: 'aborted', cause });
    }
    throw new MqchatError(`${method} ${path}: ${cause?.message ?? cause}`, { code: 'network', cause });
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (blob) return blob;
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (cause) {
      if (res.ok) {
        throw new MqchatError(`${method} ${path}: answer is not JSON`, { status: res.status, code: 'decode', cause });
      }
    }
  }
  if (!res.ok) {
    const err = json?.error ?? {};
    const retryAfter = Number(res.headers.get('retry-after'));
    throw new MqchatError(err.message ?? `${method} ${path}: HTTP ${res.status}`, {
      status: res.status,
      code: err.code ?? 'http_' + res.status,
      retryAfter: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : null,
    });
  }
  return json;
}

// ---------------------------------------------------------------------------
// Client

/**
 * @typedef {object} ClientOptions
 * @property {any} [mqtt] the MQTT.js module (default: the `mqtt` global)
 * @property {number} [timeoutMs] per request, default 30 s
 * @property {number} [maxAttempts] tries per call including the first, default 4 (1 = no retries)
 * @property {Backoff} [retryBackoff] between retries, default 300 ms doubling to 5 s
 * @property {typeof fetch} [fetch] default: the global `fetch`
 */

/**
 * Several servers: every static constructor (`login`, `register`, `resume`)
 * takes an array of base URLs as well as one, e.g. the nodes of a cluster
 * (`['http://10.0.0.1:8080', 'http://10.0.0.2:8080']`). A call that cannot
 * reach the server in use moves the client to the next (and is retried as
 * its kind allows); the event stream does the same with their WebSocket
 * endpoints and syncs from its cursor, so it stays gap-free across the move.
 * One balancer address needs none of this.
 */

/**
 * A logged-in user: the session's tokens and every HTTP call.
 *
 * It is an `EventTarget` that dispatches `CustomEvent`s:
 * - `tokens` (`detail: {refresh_token, expires_in}`) after every refresh, for
 *   apps that save the refresh token to resume later ({@link Client.resume});
 * - `sessionended` (`detail: {reason: 'expired'|'logged_out'}`) when the
 *   session is over (revoked, expired, logged out): log in again.
 */
export class Client extends EventTarget {
  /**
   * Use {@link Client.login}, {@link Client.resume} instead.
   * @param {string | string[]} baseUrl one server, or several: the first is used first
   * @param {LoginGrant} grant
   * @param {ClientOptions} [options]
   */
  constructor(baseUrl, grant, options = {}) {
    super();
    /** Every server this client may use, in order. @type {string[]} */
    this.servers = serverList(baseUrl);
    /** Base URL of chatd in use, e.g. `http://127.0.0.1:8080`. @type {string} */
    this.baseUrl = this.servers[0];
    /** The logged-in user, as of login (or the last {@link Client#me}). @type {User} */
    this.user = grant.user;
    this._options = options;
    this._mqtt = options.mqtt;
    this._timeoutMs = options.timeoutMs ?? 30_000;
    this._maxAttempts = Math.max(1, options.maxAttempts ?? 4);
    this._retryBackoff = options.retryBackoff ?? new Backoff(300, 5_000);
    /** Bumped on every refresh, so a caller can tell whether the token it used was replaced. */
    this._generation = 0;
    /** @type {?Promise<void>} */
    this._refreshing = null;
    /** @type {?('expired'|'logged_out')} */
    this._ended = null;
    this._install(grant);
  }

  /** The logged-in user's id. @returns {number} */
  get userId() {
    return this.user.id;
  }

  /**
   * `POST /v1/auth/login`.
   * @param {string} baseUrl e.g. `location.origin`
   * @param {string} username
   * @param {string} password
   * @param {ClientOptions} [options]
   * @returns {Promise<Client>}
   */
  static async login(baseUrl, username, password, options = {}) {
    const servers = serverList(baseUrl);
    const { server, answer } = await requestAny(servers, 'POST', '/v1/auth/login', {
      body: { username, password },
      timeoutMs: options.timeoutMs,
      fetch: options.fetch,
    });
    return new Client(rotateTo(servers, server), answer, options);
  }

  /**
   * `POST /v1/auth/register`: creates the account (does not log in).
   * Errors: `invalid_username`, `weak_password`, `username_taken`.
   * @param {string} baseUrl
   * @param {string} username 3–32 of `[a-z0-9_.-]` (lower-cased by the server)
   * @param {string} password 8–256 characters
   * @param {ClientOptions} [options]
   * @returns {Promise<User>}
   */
  static async register(baseUrl, username, password, options = {}) {
    const { answer } = await requestAny(serverList(baseUrl), 'POST', '/v1/auth/register', {
      body: { username, password },
      timeoutMs: options.timeoutMs,
      fetch: options.fetch,
    });
    return answer;
  }

  /**
   * Registers, then logs in.
   * @param {string} baseUrl
   * @param {string} username
   * @param {string} password
   * @param {ClientOptions} [options]
   * @returns {Promise<Client>}
   */
  static async registerAndLogin(baseUrl, username, password, options = {}) {
    await Client.register(baseUrl, username, password, options);
    return Client.login(baseUrl, username, password, options);
  }

  /**
   * Resumes a session from a refresh token saved earlier (see the `tokens`
   * event and {@link Client#refreshToken}). The token is spent: save the new
   * one. Do not resume the same token in two places: the second use of a
   * spent refresh token ends the session everywhere.
   * @param {string} baseUrl
   * @param {string} refreshToken
   * @param {ClientOptions} [options]
   * @returns {Promise<Client>}
   */
  static async resume(baseUrl, refreshToken, options = {}) {
    const servers = serverList(baseUrl);
    const { server, answer } = await requestAny(servers, 'POST', '/v1/auth/refresh', {
      body: { refresh_token: refreshToken },
      timeoutMs: options.timeoutMs,
      fetch: options.fetch,
    });
    return new Client(rotateTo(servers, server), answer, options);
  }

  /** The newest refresh token (it changes on every refresh). @returns {string} */
  get refreshToken() {
    return this._refreshToken;
  }

  /** Whether the session is still usable. @returns {boolean} */
  get active() {
    return this._ended === null;
  }

  /** @param {LoginGrant} grant */
  _install(grant) {
    const lifetimeMs = Math.max(1, grant.expires_in) * 1000;
    this._accessToken = grant.access_token;
    this._refreshToken = grant.refresh_token;
    this._lifetimeMs = lifetimeMs;
    this._expiresAt = Date.now() + lifetimeMs;
    if (grant.user) this.user = grant.user;
    this._generation += 1;
  }

  _alive() {
    if (this._ended === 'logged_out') {
      throw new MqchatError('logged out', { code: 'logged_out' });
    }
    if (this._ended) {
      throw new MqchatError('the login session has ended; log in again', { code: 'session_expired', status: 401 });
    }
  }

  /** @param {'expired'|'logged_out'} reason */
  _end(reason) {
    if (this._ended) return;
    this._ended = reason;
    this.dispatchEvent(new CustomEvent('sessionended', { detail: { reason } }));
  }

  _refreshDue() {
    const margin = Math.min(this._lifetimeMs / 5, MAX_REFRESH_MARGIN_MS);
    return Date.now() + margin >= this._expiresAt;
  }

  /**
   * A valid access token (refreshed first when it is about to expire) and its
   * generation. Also the MQTT password.
   * @returns {Promise<{token: string, generation: number}>}
   */
  async _bearer() {
    this._alive();
    if (this._refreshDue()) {
      try {
        await this._refresh(this._generation);
      } catch (err) {
        // A token that is due but not yet expired still works; a refresh that
        // failed for a passing reason is tried again on the next call.
        if (!isTransient(err) || Date.now() >= this._expiresAt) throw err;
      }
    }
    this._alive();
    return { token: this._accessToken, generation: this._generation };
  }

  /** A valid access token, refreshed first if it is about to expire. @returns {Promise<string>} */
  async accessToken() {
    return (await this._bearer()).token;
  }

  /**
   * Replaces the tokens, unless they were already replaced since the caller
   * saw generation `seen` (then the newer ones are the answer). Single-flight:
   * two refreshes with one rotating refresh token would end the session.
   * @param {number} seen
   */
  async _refresh(seen) {
    while (this._refreshing) {
      try {
        await this._refreshing;
      } catch {
        // the waiter looks at the outcome below
      }
    }
    this._alive();
    if (this._generation !== seen) return;
    const run = (async () => {
      let grant;
      try {
        // Never retried: if a lost answer had rotated the token, presenting
        // the old one again would end the session.
        grant = await request(this.baseUrl, 'POST', '/v1/auth/refresh', {
          body: { refresh_token: this._refreshToken },
          timeoutMs: this._timeoutMs,
          fetch: this._options.fetch,
        });
      } catch (err) {
        if (err instanceof MqchatError && err.status === 401) {
          this._end('expired');
          throw new MqchatError('the login session has ended; log in again', {
            code: 'session_expired',
            status: 401,
            cause: err,
          });
        }
        throw err;
      }
      this._install(grant);
      this.dispatchEvent(
        new CustomEvent('tokens', { detail: { refresh_token: grant.refresh_token, expires_in: grant.expires_in } }),
      );
    })();
    this._refreshing = run;
    try {
      await run;
    } finally {
      if (this._refreshing === run) this._refreshing = null;
    }
  }

  /**
   * One authenticated call: bearer token, one refresh on a stale-token 401,
   * retries of transient failures as far as `retry` allows.
   * @param {string} method
   * @param {string} path
   * @param {{query?: Record<string, any>, body?: any, raw?: any, responseType?: 'json'|'blob', retry?: 'always'|'ifNotSent'|'never', doneIfGone?: boolean, signal?: AbortSignal, timeoutMs?: number, idleTimeout?: boolean, onUploadProgress?: Function, onDownloadProgress?: Function}} [opts]
   */
  async _call(method, path, opts = {}) {
    const retry = opts.retry ?? 'always';
    let attempt = 0;
    let refreshed = false;
    let maybeDone = false;
    for (;;) {
      const { token, generation } = await this._bearer();
      let err;
      try {
        return await request(this.baseUrl, method, path, {
          query: opts.query,
          body: opts.body,
          raw: opts.raw,
          responseType: opts.responseType,
          token,
          timeoutMs: opts.timeoutMs ?? this._timeoutMs,
          idleTimeout: opts.idleTimeout,
          onUploadProgress: /** @type {any} */ (opts.onUploadProgress),
          onDownloadProgress: /** @type {any} */ (opts.onDownloadProgress),
          signal: opts.signal,
          fetch: this._options.fetch,
        });
      } catch (e) {
        err = e;
      }
      if (!(err instanceof MqchatError)) throw err;
      // The server in use can't be reached: the next one serves this
      // call's retry (if its kind allows one) and the calls after it.
      if (err.code === 'network') this._nextServer();
      if (maybeDone && opts.doneIfGone && err.status === 404) return null;
      const allowed =
        retry === 'always' ? err.transient : retry === 'ifNotSent' ? err.transient && err.neverReachedServer : false;
      if (err.staleToken && !refreshed) {
        refreshed = true;
        await this._refresh(generation);
      } else if (allowed && attempt + 1 < this._maxAttempts && !opts.signal?.aborted) {
        maybeDone ||= !err.neverReachedServer;
        let delay = this._retryBackoff.delay(attempt);
        if (err.retryAfter !== null) delay = Math.max(delay, Math.min(err.retryAfter * 1000, 30_000));
        attempt += 1;
        await sleep(delay, opts.signal);
      } else {
        throw err;
      }
    }
  }

  /** Moves to the server after the one in use (with several). */
  _nextServer() {
    const i = this.servers.indexOf(this.baseUrl);
    this.baseUrl = this.servers[(i + 1) % this.servers.length];
  }

  // --- session --------------------------------------------------------------

  /**
   * `POST /v1/auth/logout`: ends this login session (or every session of the
   * user with `everywhere`): refresh token revoked, access tokens refused, MQTT
   * connections closed. The client is unusable afterwards.
   * @param {{everywhere?: boolean}} [opts]
   */
  async logout(opts = {}) {
    try {
      await this._call('POST', '/v1/auth/logout', {
        body: { refresh_token: this._refreshToken, everywhere: !!opts.everywhere },
        retry: 'ifNotSent',
      });
    } finally {
      this._end('logged_out');
    }
  }

  /** `GET /v1/me`. @returns {Promise<User>} */
  async me() {
    const user = await this._call('GET', '/v1/me');
    this.user = user;
    return user;
  }

  /** `PATCH /v1/me {display_name}`. @param {?string} displayName @returns {Promise<User>} */
  async updateMe(displayName) {
    const user = await this._call('PATCH', '/v1/me', { body: { display_name: displayName } });
    this.user = user;
    return user;
  }

  /** `GET /v1/users/{id}`. @param {number} id @returns {Promise<User>} */
  getUser(id) {
    return this._call('GET', `/v1/users/${id}`);
  }

  /**
   * `GET /v1/users?username=NAME`: the user, or `null` if there is none.
   * @param {string} username
   * @returns {Promise<?User>}
   */
  async userByName(username) {
    try {
      return await this._call('GET', '/v1/users', { query: { username } });
    } catch (err) {
      if (err instanceof MqchatError && err.status === 404) return null;
      throw err;
    }
  }

  // --- messages -------------------------------------------------------------

  /**
   * `POST /v1/messages`: sends a message and answers it as stored. The
   * `client_msg_id` (generated unless given) is reused on every retry, so a
   * retry after a lost answer returns the original instead of storing a copy.
   * @param {Recipient} to `{user: ID}` or `{group: ID}`
   * @param {object} body a JSON object, `{text}` for text
   * @param {{clientMsgId?: string, replyTo?: number, mentions?: Mentions}} [opts]
   *   `replyTo`: a message of the same conversation to answer (else
   *   `invalid_reply`); `mentions`: member ids, or `'all'` (else
   *   `invalid_mention`, or `forbidden` for `'all'` from a plain member of a
   *   group that keeps it to admins). A mentioned user's `message.created`
   *   event carries `mentioned: true`.
   * @returns {Promise<Message>}
   */
  async send(to, body, opts = {}) {
    const clientMsgId = checkedClientMsgId(opts.clientMsgId);
    const send = { to, client_msg_id: clientMsgId, body };
    if (opts.replyTo !== undefined) send.reply_to = opts.replyTo;
    if (opts.mentions !== undefined) send.mentions = opts.mentions;
    return this._call('POST', '/v1/messages', { body: send });
  }

  /**
   * `POST /v1/messages/{id}/forward`: copies a message one can see (files
   * included) into `to`, as one's own message with `forwarded_from`. The
   * `client_msg_id` (generated unless given) is reused on every retry.
   * @param {number} messageId @param {Recipient} to
   * @param {{clientMsgId?: string}} [opts]
   * @returns {Promise<Message>}
   */
  forward(messageId, to, opts = {}) {
    const clientMsgId = checkedClientMsgId(opts.clientMsgId);
    return this._call('POST', `/v1/messages/${messageId}/forward`, { body: { to, client_msg_id: clientMsgId } });
  }

  /**
   * `POST /v1/messages/batch`: up to {@link MAX_BATCH_SENDS} sends in one
   * request, stored in the order given. Answers one result per send, in
   * order: `{ok: true, message}` (stored, or the original for a
   * `clientMsgId` already used) or `{ok: false, error}` with the
   * `MqchatError` a single send would have thrown; one refused send stops
   * nothing. Each `clientMsgId` (generated unless given) is kept for every
   * retry of the request, so a retry never doubles a message; a send that
   * failed transiently (`error.transient`, e.g. 429) can go again with the
   * same id.
   * @param {{to: Recipient, body: object, clientMsgId?: string, replyTo?: number, mentions?: Mentions}[]} sends
   * @returns {Promise<({ok: true, message: Message} | {ok: false, error: MqchatError})[]>}
   */
  async sendBatch(sends) {
    if (!Array.isArray(sends) || sends.length < 1 || sends.length > MAX_BATCH_SENDS) {
      throw new MqchatError(`a batch holds 1..=${MAX_BATCH_SENDS} sends`, { code: 'invalid_input' });
    }
    const messages = sends.map(({ to, body, clientMsgId, replyTo, mentions }) => {
      const send = { to, client_msg_id: checkedClientMsgId(clientMsgId), body };
      if (replyTo !== undefined) send.reply_to = replyTo;
      if (mentions !== undefined) send.mentions = mentions;
      return send;
    });
    const answer = await this._call('POST', '/v1/messages/batch', { body: { messages } });
    if (!Array.isArray(answer?.results) || answer.results.length !== messages.length) {
      throw new MqchatError('POST /v1/messages/batch: not one result per send', { code: 'decode' });
    }
    return answer.results.map((r) =>
      r.message && r.status < 300
        ? { ok: true, message: r.message }
        : {
            ok: false,
            error: new MqchatError(r.error?.message ?? `HTTP ${r.status}`, {
              status: r.status,
              code: r.error?.code ?? 'http_' + r.status,
            }),
          },
    );
  }

  /**
   * Sends `{text}`; see {@link Client#send}.
   * @param {Recipient} to
   * @param {string} text 1–4000 characters
   * @param {{clientMsgId?: string}} [opts]
   * @returns {Promise<Message>}
   */
  sendText(to, text, opts = {}) {
    return this.send(to, { text }, opts);
  }

  /** @param {number} userId @param {string} text @param {{clientMsgId?: string}} [opts] @returns {Promise<Message>} */
  sendTextToUser(userId, text, opts) {
    return this.sendText({ user: userId }, text, opts);
  }

  /** @param {number} groupId @param {string} text @param {{clientMsgId?: string}} [opts] @returns {Promise<Message>} */
  sendTextToGroup(groupId, text, opts) {
    return this.sendText({ group: groupId }, text, opts);
  }

  // --- attachments ------------------------------------------------------------

  /**
   * `POST /v1/files?name=`: uploads a file (the raw bytes; the server sniffs
   * the type) and answers its {@link FileInfo}; images come back with
   * `width`, `height` and a `thumbnail_id`. Then reference it in a message:
   * {@link Client#sendImage}, {@link Client#sendFile} or {@link Client#sendAttachment}.
   *
   * Retried after transient failures like reads are (with a fresh token after
   * a 401). An upload is not idempotent, so a retry after the body may have
   * reached the server can store a second copy; that is harmless: identical
   * bytes share one blob on the server, and uploads no message references are
   * deleted after a while (a day by default). Errors that a repeat would not
   * cure are not retried: `payload_too_large` (413; 20 MiB by default),
   * `upload_quota_exceeded` (413 for the total quota; 429 with `retryAfter`
   * for the daily one), `invalid_request` (400: an empty file, a bad name).
   *
   * In a browser the bytes go through `XMLHttpRequest`, which reports upload
   * progress (elsewhere, or with a custom `fetch`, `onProgress` is called once
   * the body is sent).
   *
   * @param {Blob | ArrayBuffer | ArrayBufferView} file a `File`, `Blob` or bytes (not a stream: a retry re-reads it)
   * @param {object} [opts]
   * @param {string} [opts.name] shown to recipients; default the `File`'s name. 1–255 characters, no slashes, no invisible, bidi or control characters
   * @param {(sent: number, total: ?number) => void} [opts.onProgress] bytes sent so far of the current attempt (it starts again from 0 on a retry)
   * @param {AbortSignal} [opts.signal] cancels the upload (rejects with code `aborted`)
   * @param {number} [opts.timeoutMs] in a browser the longest time without progress, elsewhere the limit of the whole upload;
   *   default the client's `timeoutMs` but at least 60 s (elsewhere plus 1 s per 16 KiB)
   * @returns {Promise<FileInfo>}
   */
  async uploadFile(file, opts = {}) {
    const isBlob = typeof Blob !== 'undefined' && file instanceof Blob;
    if (!isBlob && !(file instanceof ArrayBuffer) && !ArrayBuffer.isView(file)) {
      throw new MqchatError('uploadFile takes a File, a Blob or bytes', { code: 'invalid_input' });
    }
    let name = opts.name;
    const fileName = /** @type {any} */ (file).name;
    if (name === undefined && typeof fileName === 'string' && fileName) name = fileName;
    const size = isBlob ? /** @type {Blob} */ (file).size : /** @type {ArrayBuffer} */ (file).byteLength;
    const progress = !this._options.fetch && typeof globalThis.XMLHttpRequest === 'function';
    const base = Math.max(this._timeoutMs, 60_000);
    return this._call('POST', '/v1/files', {
      query: { name: name || undefined },
      raw: file,
      retry: 'always',
      signal: opts.signal,
      timeoutMs: opts.timeoutMs ?? (progress ? base : base + Math.ceil(size / 16_384) * 1000),
      idleTimeout: progress,
      onUploadProgress: opts.onProgress ?? (progress ? () => {} : undefined),
    });
  }

  /**
   * `GET /v1/files/{id}`: a file's bytes, as a `Blob` typed with the file's
   * content type. 404 (`not_found`) unless this user uploaded it or can see a
   * message referencing it. Retried after transient failures.
   *
   * The endpoint needs the bearer token, so a page cannot point `<img src>`
   * at it: fetch it here and show `URL.createObjectURL(blob)` (keep one URL
   * per id, and revoke them when done).
   * @param {string} id a file id, or an image's `thumbnail_id`
   * @param {object} [opts]
   * @param {(received: number, total: ?number) => void} [opts.onProgress] bytes received so far
   * @param {AbortSignal} [opts.signal]
   * @param {number} [opts.timeoutMs] the longest time without progress; default the client's `timeoutMs`
   * @returns {Promise<Blob>}
   */
  async downloadFile(id, opts = {}) {
    return this._call('GET', `/v1/files/${encodeURIComponent(id)}`, {
      responseType: 'blob',
      signal: opts.signal,
      timeoutMs: opts.timeoutMs,
      idleTimeout: true,
      onDownloadProgress: opts.onProgress,
    });
  }

  /**
   * Sends an uploaded image: `{image: {id, name, width, height, thumbnail_id}}`
   * (plus `text` as a caption). Same guarantees as {@link Client#send}: one
   * `client_msg_id` (generated unless given) for every retry.
   * @param {Recipient} to
   * @param {FileInfo} fileInfo what {@link Client#uploadFile} answered
   * @param {{text?: string, clientMsgId?: string}} [opts]
   * @returns {Promise<Message>}
   */
  async sendImage(to, fileInfo, opts = {}) {
    const info = checkFileInfo(fileInfo);
    return this.send(
      to,
      withText(
        { image: compact({ id: info.id, name: info.name, width: info.width, height: info.height, thumbnail_id: info.thumbnail_id }) },
        opts.text,
      ),
      opts,
    );
  }

  /**
   * Sends an uploaded file: `{file: {id, name, size, content_type}}` (plus
   * `text`). Same guarantees as {@link Client#send}.
   * @param {Recipient} to
   * @param {FileInfo} fileInfo what {@link Client#uploadFile} answered
   * @param {{text?: string, clientMsgId?: string}} [opts]
   * @returns {Promise<Message>}
   */
  async sendFile(to, fileInfo, opts = {}) {
    const info = checkFileInfo(fileInfo);
    return this.send(
      to,
      withText({ file: compact({ id: info.id, name: info.name, size: info.size, content_type: info.content_type }) }, opts.text),
      opts,
    );
  }

  /**
   * {@link Client#sendImage} for images the server could decode (it gave
   * them a size), else {@link Client#sendFile}.
   * @param {Recipient} to
   * @param {FileInfo} fileInfo
   * @param {{text?: string, clientMsgId?: string}} [opts]
   * @returns {Promise<Message>}
   */
  sendAttachment(to, fileInfo, opts = {}) {
    return isImageInfo(fileInfo) ? this.sendImage(to, fileInfo, opts) : this.sendFile(to, fileInfo, opts);
  }

  /**
   * `PATCH /v1/messages/{id}`: edits one's own text message (retried only if
   * provably not sent: a repeat could overwrite a newer edit).
   * @param {number} messageId @param {string} text @returns {Promise<Message>}
   */
  editText(messageId, text) {
    return this._call('PATCH', `/v1/messages/${messageId}`, { body: { body: { text } }, retry: 'ifNotSent' });
  }

  /** `POST /v1/messages/{id}/recall`: answers the tombstone. @param {number} messageId @returns {Promise<Message>} */
  recall(messageId) {
    return this._call('POST', `/v1/messages/${messageId}/recall`);
  }

  /**
   * `PUT /v1/messages/{id}/reactions/{emoji}`: reacts with one emoji (again:
   * no change; counts as a send for the rate limit). Answers the message's
   * reactions.
   * @param {number} messageId @param {string} emoji
   * @returns {Promise<{message_id: number, reactions: Reaction[]}>}
   */
  react(messageId, emoji) {
    return this._call('PUT', `/v1/messages/${messageId}/reactions/${encodeURIComponent(emoji)}`);
  }

  /**
   * `DELETE /v1/messages/{id}/reactions/{emoji}`: takes a reaction back.
   * @param {number} messageId @param {string} emoji
   * @returns {Promise<{message_id: number, reactions: Reaction[]}>}
   */
  unreact(messageId, emoji) {
    return this._call('DELETE', `/v1/messages/${messageId}/reactions/${encodeURIComponent(emoji)}`);
  }

  /** `DELETE /v1/messages/{id}`: hides a message from one's own history. @param {number} messageId */
  async deleteForMe(messageId) {
    await this._call('DELETE', `/v1/messages/${messageId}`);
  }

  /**
   * `GET /v1/search?q=&limit=`: full-text search in one's conversations.
   * @param {string} q @param {number} [limit] @returns {Promise<Message[]>}
   */
  async search(q, limit) {
    const res = await this._call('GET', '/v1/search', { query: { q, limit } });
    return res.messages;
  }

  // --- conversations ----------------------------------------------------------

  /**
   * `GET /v1/conversations`: those this user pinned first, then most recent
   * first, with unread counts and this user's settings; the archived ones
   * only with `archived: true`.
   * @param {{limit?: number, archived?: boolean}} [opts]
   * @returns {Promise<Conversation[]>}
   */
  async conversations(opts = {}) {
    const res = await this._call('GET', '/v1/conversations', {
      query: { limit: opts.limit, archived: opts.archived },
    });
    return res.conversations;
  }

  /**
   * `PATCH /v1/conversations/{id}/settings`: changes this user's own
   * settings (absent fields stay); `mutedUntil: null` unmutes. This user's
   * other devices get `conversation.settings`.
   * @param {number} conversationId
   * @param {{mutedUntil?: number|'forever'|null, pinned?: boolean, archived?: boolean}} change
   * @returns {Promise<ConversationSettings>}
   */
  updateConversationSettings(conversationId, change) {
    /** @type {Record<string, any>} */
    const body = {};
    if (change.mutedUntil !== undefined) body.muted_until = change.mutedUntil;
    if (change.pinned !== undefined) body.pinned = change.pinned;
    if (change.archived !== undefined) body.archived = change.archived;
    return this._call('PATCH', `/v1/conversations/${conversationId}/settings`, { body });
  }

  /** `GET /v1/conversations/{id}/pins`: newest pin first. @param {number} conversationId @returns {Promise<Pin[]>} */
  async pins(conversationId) {
    return (await this._call('GET', `/v1/conversations/${conversationId}/pins`)).pins;
  }

  /**
   * `PUT /v1/conversations/{id}/pins/{message_id}`: pins a message (in a
   * group: the owner and admins, or everyone when `who_can_pin` is `members`).
   * @param {number} conversationId @param {number} messageId
   */
  async pin(conversationId, messageId) {
    await this._call('PUT', `/v1/conversations/${conversationId}/pins/${messageId}`);
  }

  /** `DELETE /v1/conversations/{id}/pins/{message_id}`. @param {number} conversationId @param {number} messageId */
  async unpin(conversationId, messageId) {
    await this._call('DELETE', `/v1/conversations/${conversationId}/pins/${messageId}`);
  }

  /**
   * `GET /v1/conversations/{id}/messages`: a page of history, oldest first.
   * Page backwards by passing the first message's seq as `beforeSeq`.
   * @param {number} conversationId
   * @param {{beforeSeq?: number, limit?: number}} [opts]
   * @returns {Promise<{messages: Message[], has_more: boolean}>}
   */
  history(conversationId, opts = {}) {
    return this._call('GET', `/v1/conversations/${conversationId}/messages`, {
      query: { before_seq: opts.beforeSeq, limit: opts.limit },
    });
  }

  /**
   * `POST /v1/conversations/{id}/read {seq}`: moves the read marker (never
   * backwards) and answers it.
   * @param {number} conversationId @param {number} seq @returns {Promise<number>} the read marker
   */
  async markRead(conversationId, seq) {
    const res = await this._call('POST', `/v1/conversations/${conversationId}/read`, { body: { seq } });
    return res.read_seq;
  }

  /**
   * `POST /v1/conversations/{id}/typing`: tells the other members this user is
   * typing. Call it every few seconds while the user types, not per keystroke.
   * Never retried: a late indicator is worse than none.
   * @param {number} conversationId
   */
  async typing(conversationId) {
    await this._call('POST', `/v1/conversations/${conversationId}/typing`, { retry: 'never' });
  }

  /**
   * `PATCH /v1/conversations/{id} {message_ttl_seconds}`: sets the
   * conversation's disappearing-messages timer (5 to 31,536,000 seconds) or
   * turns it off (`null` or 0); answers the timer now in force. Either person
   * may in a direct conversation, owners and admins in a group; every member
   * gets `conversation.message_ttl`.
   * @param {number} conversationId @param {?number} seconds @returns {Promise<?number>}
   */
  async setMessageTtl(conversationId, seconds) {
    const res = await this._call('PATCH', `/v1/conversations/${conversationId}`, {
      body: { message_ttl_seconds: seconds },
    });
    return res.message_ttl_seconds;
  }

  // --- sync ----------------------------------------------------------------------

  /**
   * `GET /v1/sync`: inbox events after `after`. Most apps use
   * {@link Client#connect} instead, which syncs as needed.
   * @param {number} after
   * @param {number} [limit] 1–500 (default 500)
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<SyncPage>}
   */
  sync(after, limit = MAX_SYNC_LIMIT, opts = {}) {
    return this._call('GET', '/v1/sync', { query: { after, limit }, signal: opts.signal });
  }

  /**
   * The inbox's current cursor, found by reading sync to its end (one request
   * per 500 events after `after`).
   * @param {number} [after]
   * @returns {Promise<number>}
   */
  async currentCursor(after = 0) {
    for (;;) {
      const page = await this.sync(after, MAX_SYNC_LIMIT);
      const next = Math.max(after, page.cursor);
      if (!page.has_more || next === after) return next;
      after = next;
    }
  }

  /**
   * `POST /v1/sync/ack {device_id, cursor}`: records what a device has
   * received; senders get `receipt.delivered`.
   * @param {string} deviceId @param {number} cursor
   */
  async ack(deviceId, cursor) {
    await this._call('POST', '/v1/sync/ack', { body: { device_id: deviceId, cursor } });
  }

  // --- friends ---------------------------------------------------------------------

  /** `GET /v1/friends`, with presence. @returns {Promise<Friend[]>} */
  async friends() {
    return (await this._call('GET', '/v1/friends')).friends;
  }

  /** `GET /v1/friends/online`. @returns {Promise<Friend[]>} */
  async onlineFriends() {
    return (await this._call('GET', '/v1/friends/online')).friends;
  }

  /** `DELETE /v1/friends/{user_id}`. @param {number} userId */
  async removeFriend(userId) {
    await this._call('DELETE', `/v1/friends/${userId}`, { doneIfGone: true });
  }

  /**
   * `GET /v1/friends/requests?direction=`: pending requests, newest first.
   * @param {'incoming'|'outgoing'} [direction]
   * @returns {Promise<FriendRequest[]>}
   */
  async friendRequests(direction = 'incoming') {
    return (await this._call('GET', '/v1/friends/requests', { query: { direction } })).requests;
  }

  /** @returns {Promise<FriendRequest[]>} */
  incomingFriendRequests() {
    return this.friendRequests('incoming');
  }

  /** @returns {Promise<FriendRequest[]>} */
  outgoingFriendRequests() {
    return this.friendRequests('outgoing');
  }

  /**
   * `POST /v1/friends/requests {user_id, note}`. Answers the new pending
   * request, or, if that user had already asked this one, their request,
   * accepted (the two are friends now). Errors: `not_found`, `forbidden`,
   * `conflict` (already friends or already pending).
   * @param {number} userId @param {string} [note] @returns {Promise<FriendRequest>}
   */
  sendFriendRequest(userId, note) {
    return this._call('POST', '/v1/friends/requests', {
      body: note ? { user_id: userId, note } : { user_id: userId },
      retry: 'ifNotSent',
    });
  }

  /** @param {number} requestId @returns {Promise<FriendRequest>} */
  acceptFriendRequest(requestId) {
    return this._call('POST', `/v1/friends/requests/${requestId}/accept`, { retry: 'ifNotSent' });
  }

  /** @param {number} requestId @returns {Promise<FriendRequest>} */
  rejectFriendRequest(requestId) {
    return this._call('POST', `/v1/friends/requests/${requestId}/reject`, { retry: 'ifNotSent' });
  }

  /** @param {number} requestId @returns {Promise<FriendRequest>} */
  cancelFriendRequest(requestId) {
    return this._call('POST', `/v1/friends/requests/${requestId}/cancel`, { retry: 'ifNotSent' });
  }

  /** `GET /v1/blocks`. @returns {Promise<number[]>} */
  async blocks() {
    return (await this._call('GET', '/v1/blocks')).user_ids;
  }

  /** `POST /v1/blocks`. @param {number} userId */
  async block(userId) {
    await this._call('POST', '/v1/blocks', { body: { user_id: userId } });
  }

  /** `DELETE /v1/blocks/{user_id}`. @param {number} userId */
  async unblock(userId) {
    await this._call('DELETE', `/v1/blocks/${userId}`, { doneIfGone: true });
  }

  /**
   * `GET /v1/presence?users=`: presence of those of `userIds` who are friends
   * (others are left out). Asks in batches of 200.
   * @param {number[]} userIds
   * @returns {Promise<Presence[]>}
   */
  async presence(userIds) {
    const out = [];
    for (let i = 0; i < userIds.length; i += MAX_PRESENCE_BATCH) {
      const users = userIds.slice(i, i + MAX_PRESENCE_BATCH).join(',');
      out.push(...(await this._call('GET', '/v1/presence', { query: { users } })).presence);
    }
    return out;
  }

  // --- groups -------------------------------------------------------------------------

  /**
   * `POST /v1/groups {name, members}`: a group owned by this user. Not retried
   * once it may have reached the server (a repeat makes a second group).
   * @param {string} name 1–64 characters @param {number[]} [members]
   * @returns {Promise<Group>}
   */
  createGroup(name, members = []) {
    return this._call('POST', '/v1/groups', { body: { name, members }, retry: 'ifNotSent' });
  }

  /** `GET /v1/groups`. @returns {Promise<Group[]>} */
  async groups() {
    return (await this._call('GET', '/v1/groups')).groups;
  }

  /** `GET /v1/groups/{id}`. @param {number} groupId @returns {Promise<Group>} */
  group(groupId) {
    return this._call('GET', `/v1/groups/${groupId}`);
  }

  /** `PATCH /v1/groups/{id} {name}`. @param {number} groupId @param {string} name @returns {Promise<Group>} */
  renameGroup(groupId, name) {
    return this._call('PATCH', `/v1/groups/${groupId}`, { body: { name }, retry: 'ifNotSent' });
  }

  /**
   * `PATCH /v1/groups/{id} {who_can_pin}` (owner or admin).
   * @param {number} groupId @param {'admins'|'members'} policy @returns {Promise<Group>}
   */
  setGroupPinPolicy(groupId, policy) {
    return this._call('PATCH', `/v1/groups/${groupId}`, { body: { who_can_pin: policy } });
  }

  /**
   * `PATCH /v1/groups/{id} {mention_all}` (owner, admins): who may mention `"all"`.
   * @param {number} groupId @param {'admins'|'members'} mentionAll @returns {Promise<Group>}
   */
  setGroupMentionAll(groupId, mentionAll) {
    return this._call('PATCH', `/v1/groups/${groupId}`, { body: { mention_all: mentionAll } });
  }

  /** `DELETE /v1/groups/{id}` (owner). @param {number} groupId */
  async dissolveGroup(groupId) {
    await this._call('DELETE', `/v1/groups/${groupId}`, { doneIfGone: true });
  }

  /** `POST /v1/groups/{id}/members {user_ids}`. @param {number} groupId @param {number[]} userIds @returns {Promise<Group>} */
  addGroupMembers(groupId, userIds) {
    return this._call('POST', `/v1/groups/${groupId}/members`, { body: { user_ids: userIds } });
  }

  /** `DELETE /v1/groups/{id}/members/{user_id}`. @param {number} groupId @param {number} userId */
  async removeGroupMember(groupId, userId) {
    await this._call('DELETE', `/v1/groups/${groupId}/members/${userId}`, { doneIfGone: true });
  }

  /**
   * `PUT /v1/groups/{id}/members/{user_id}/role {role}`.
   * @param {number} groupId @param {number} userId @param {'admin'|'member'} role
   */
  setGroupRole(groupId, userId, role) {
    return this._call('PUT', `/v1/groups/${groupId}/members/${userId}/role`, { body: { role } });
  }

  /** `POST /v1/groups/{id}/leave`. @param {number} groupId */
  async leaveGroup(groupId) {
    await this._call('POST', `/v1/groups/${groupId}/leave`, { doneIfGone: true });
  }

  /** `POST /v1/groups/{id}/transfer {user_id}`. @param {number} groupId @param {number} userId @returns {Promise<Group>} */
  transferGroup(groupId, userId) {
    return this._call('POST', `/v1/groups/${groupId}/transfer`, { body: { user_id: userId }, retry: 'ifNotSent' });
  }

  // --- downlink ---------------------------------------------------------------------

  /**
   * Opens the event stream: MQTT over WebSocket, with sync filling whatever
   * the push missed. Returns at once; the connection is made in the
   * background (listen for `state` to see it go `live`).
   * @param {StreamOptions} [options]
   * @returns {EventStream}
   */
  connect(options = {}) {
    return new EventStream(this, options);
  }
}

// ---------------------------------------------------------------------------
// Sequencer

/**
 * The ordering state machine of an event stream: merges pushed events and sync
 * pages into one gap-free, duplicate-free stream in cursor order. Pure (no I/O,
 * no clock); a port of the Rust SDK's `Sequencer`.
 *
 * The push is only a notification; the store (read through sync) is the truth.
 * An out-of-order push is dropped and a sync from the last delivered cursor
 * reads it (and everything before it). The server commits an event before it
 * pushes it, so a sync sent after a push arrived always returns that event.
 *
 * Protocol: {@link Sequencer#onConnected} once the subscription is active;
 * every push to {@link Sequencer#onPush}; whenever {@link Sequencer#startSync}
 * returns a cursor, fetch `GET /v1/sync?after=` it and hand the page to
 * {@link Sequencer#onSyncPage} (or call {@link Sequencer#onSyncFailed}).
 */
export class Sequencer {
  /** @param {number} [last] deliver events after this cursor (0 = from the beginning) */
  constructor(last = 0) {
    /** Cursor of the last event handed out. */
    this.last = last;
    /** Highest cursor known to exist (seen in a push); `>= last`. */
    this.target = last;
    /** @type {'idle'|'needed'|'inflight'} */
    this.sync = 'idle';
    /** While in flight: `last` and `target` when the request was sent. */
    this.inflight = { after: 0, known: 0 };
  }

  /** Nothing known to be missing and no sync wanted or running. */
  isSynced() {
    return this.sync === 'idle' && this.target <= this.last;
  }

  /** The subscription is (again) active: anything pushed meanwhile is lost, so sync. */
  onConnected() {
    this.sync = 'needed';
  }

  /**
   * Orders one pushed event.
   * @param {MqchatEvent} event
   * @returns {'deliver'|'duplicate'|'deferred'}
   */
  onPush(event) {
    const cursor = event?.cursor;
    if (typeof cursor !== 'number') return 'deliver';
    if (cursor <= this.last) return 'duplicate';
    if (cursor === this.last + 1) {
      this.last = cursor;
      this.target = Math.max(this.target, cursor);
      return 'deliver';
    }
    this.target = Math.max(this.target, cursor);
    if (this.sync === 'idle') this.sync = 'needed';
    return 'deferred';
  }

  /**
   * If a sync page should be fetched now, marks it in flight and returns the
   * `after` cursor to fetch from; otherwise `null`.
   * @returns {?number}
   */
  startSync() {
    if (this.sync !== 'needed') return null;
    this.sync = 'inflight';
    this.inflight = { after: this.last, known: this.target };
    return this.last;
  }

  /** The sync in flight failed; it will be started again. */
  onSyncFailed() {
    if (this.sync === 'inflight') this.sync = 'needed';
  }

  /**
   * Applies a sync page; returns the events to hand out, in order. The page is
   * the truth: its `cursor` moves `last` forward even past skipped cursors.
   * @param {SyncPage} page
   * @returns {MqchatEvent[]}
   */
  onSyncPage(page) {
    const out = [];
    for (const event of page.events ?? []) {
      const cursor = event?.cursor;
      if (typeof cursor !== 'number') {
        out.push(event);
      } else if (cursor > this.last) {
        this.last = cursor;
        out.push(event);
      }
    }
    this.last = Math.max(this.last, page.cursor ?? 0);
    this.target = Math.max(this.target, this.last);
    if (this.sync === 'inflight') {
      const { after, known } = this.inflight;
      const progressed = this.last > after;
      if (page.has_more && progressed) {
        this.sync = 'needed';
      } else if (this.target <= this.last) {
        this.sync = 'idle';
      } else if (this.target > known) {
        // Pushes arrived while the request was out; its snapshot may predate
        // their commit. Ask again.
        this.sync = 'needed';
      } else {
        // The request was sent after these pushes arrived, yet the store does
        // not have them. The store is the truth.
        this.target = this.last;
        this.sync = 'idle';
      }
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// EventStream

/**
 * @typedef {object} StreamOptions
 * @property {string} [url] WebSocket MQTT endpoint; default `ws(s)://<base host>/mqtt`
 * @property {string[]} [urls] several WebSocket MQTT endpoints (nodes of a cluster): on a lost
 *   connection the stream moves to the next, at once unless a whole round failed, and syncs
 *   there; default one per server of the client ({@link Client#servers})
 * @property {any} [mqtt] the MQTT.js module; default the client's, else the `mqtt` global
 * @property {'beginning'|'now'|number} [start] where to start: every inbox event
 *   (`'beginning'`, the default), only new ones (`'now'`: the current cursor is
 *   read through sync first), or those after a cursor saved from {@link EventStream#lastCursor}
 * @property {string} [deviceId] MQTT client id and ack key (1–64 chars); default random
 * @property {number} [keepalive] MQTT keep-alive, seconds; default 60
 * @property {4|5} [protocolVersion] MQTT 3.1.1 (4, default) or 5
 * @property {number} [syncPageSize] events per sync request, 1–500 (default 500)
 * @property {Backoff} [backoff] between reconnects; default 500 ms doubling to 30 s
 * @property {number} [ackEveryMs] `POST /v1/sync/ack` the delivered cursor this often (when it moved); default never
 * @property {number} [connectTimeoutMs] MQTT CONNECT timeout; default 10 s
 */

/**
 * What an {@link EventStream} is doing: `connecting` (opening MQTT, or finding
 * the start cursor), `syncing` (subscribed; reading missed events), `live`
 * (caught up; new events arrive by push), `waiting` (connection lost; waiting
 * before the next attempt), `closed` (closed, or a fatal error).
 * @typedef {'connecting'|'syncing'|'live'|'waiting'|'closed'} StreamState
 */

/**
 * The user's events: inbox events gap-free, duplicate-free and in cursor order
 * across disconnects, with presence and typing pushes interleaved as they come.
 *
 * An `EventTarget` dispatching `CustomEvent`s whose `detail` is the event:
 * - `event`: every event;
 * - the event's own `type` too: `message.created`, `presence`, `typing`, ...;
 * - `state` (`detail: {state, error}`): {@link StreamState} changes; `error` is
 *   the reason of a `waiting` (transient) or final `closed`;
 * - `error` (`detail`: an {@link MqchatError}): the stream ended for good
 *   (session over, server refuses), then `state` `closed`.
 *
 * It is also an async iterable: `for await (const ev of stream)` yields each
 * event from the moment iteration starts, ends when the stream is closed, and
 * throws the fatal error if there is one.
 *
 * Connection trouble is not an error: it reconnects (backoff with jitter,
 * refreshing the token when the broker refuses it) and catches up through sync.
 */
export class EventStream extends EventTarget {
  /**
   * Use {@link Client#connect}.
   * @param {Client} client
   * @param {StreamOptions} [options]
   */
  constructor(client, options = {}) {
    super();
    const lib = options.mqtt ?? client._mqtt ?? globalThis.mqtt;
    if (!lib || typeof lib.connect !== 'function') {
      throw new MqchatError('MQTT.js not found: load mqtt.min.js (the `mqtt` global) or pass {mqtt}', {
        code: 'no_mqtt',
      });
    }
    const deviceId = options.deviceId ?? `web-${randomId(16)}`;
    if (deviceId.length < 1 || deviceId.length > 64) {
      throw new MqchatError('deviceId must be 1..=64 characters', { code: 'invalid_input' });
    }
    /** @type {Client} */
    this.client = client;
    /** Every WebSocket URL to try, in order (see {@link StreamOptions}). @type {string[]} */
    this.urls = options.urls ?? (options.url ? [options.url] : client.servers.map(websocketUrlFor));
    if (this.urls.length === 0) throw new MqchatError('no WebSocket URL given', { code: 'invalid_input' });
    /** The WebSocket URL in use. @type {string} */
    this.url = options.url ?? websocketUrlFor(client.baseUrl);
    if (!this.urls.includes(this.url)) this.url = this.urls[0];
    /** MQTT client id and ack key. @type {string} */
    this.deviceId = deviceId;
    this._lib = lib;
    this._start = options.start ?? 'beginning';
    this._keepalive = options.keepalive ?? 60;
    this._protocolVersion = options.protocolVersion ?? 4;
    this._pageSize = Math.min(Math.max(Math.trunc(options.syncPageSize ?? MAX_SYNC_LIMIT), 1), MAX_SYNC_LIMIT);
    this._backoff = options.backoff ?? new Backoff(500, 30_000);
    this._connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    /** @type {StreamState} */
    this._state = 'connecting';
    this._closed = false;
    /** @type {?MqchatError} */
    this._error = null;
    this._lastCursor = typeof this._start === 'number' ? this._start : 0;
    /** @type {Set<{queue: MqchatEvent[], wake: ?(() => void)}>} */
    this._iterators = new Set();
    /** Ends the current connection (see {@link EventStream#reconnect}). @type {?((ended: any) => void)} */
    this._finish = null;
    this._stop = new AbortController();
    /** @type {?AbortController} */
    this._wait = null;
    this._onOnline = () => this._wait?.abort();
    globalThis.addEventListener?.('online', this._onOnline);
    if (options.ackEveryMs) this._startAcks(Math.max(100, options.ackEveryMs));
    /** Resolves when the stream has ended. @type {Promise<void>} */
    this.closed = Promise.resolve().then(() => this._run());
  }

  /** @returns {StreamState} */
  get state() {
    return this._state;
  }

  /** Cursor of the last inbox event dispatched (or the start cursor): save it to resume with `start`. */
  get lastCursor() {
    return this._lastCursor;
  }

  /** The fatal error that closed the stream, if any. @returns {?MqchatError} */
  get error() {
    return this._error;
  }

  /**
   * Listens to one event type; returns a function that stops listening.
   * @param {string} type `event`, `state`, `error` or an event type such as `message.created`
   * @param {(detail: any) => void} fn called with the `detail`
   * @returns {() => void}
   */
  on(type, fn) {
    const listener = (/** @type {CustomEvent} */ e) => fn(e.detail);
    this.addEventListener(type, /** @type {EventListener} */ (listener));
    return () => this.removeEventListener(type, /** @type {EventListener} */ (listener));
  }

  /**
   * Resolves once the stream is `live` (caught up); rejects if it closes first.
   * @param {number} [timeoutMs] reject after this long
   * @returns {Promise<void>}
   */
  untilLive(timeoutMs) {
    if (this._state === 'live') return Promise.resolve();
    return new Promise((resolve, reject) => {
      let timer;
      const off = this.on('state', ({ state, error }) => {
        if (state === 'live') {
          done();
          resolve();
        } else if (state === 'closed') {
          done();
          reject(error ?? new MqchatError('stream closed', { code: 'closed' }));
        }
      });
      const done = () => {
        off();
        clearTimeout(timer);
      };
      if (timeoutMs) {
        timer = setTimeout(() => {
          done();
          reject(new MqchatError('stream not live in time', { code: 'timeout' }));
        }, timeoutMs);
      }
    });
  }

  /**
   * Drops the current connection (or cuts a backoff wait short) and
   * reconnects now, then syncs. E.g. when the app learns the network is back.
   */
  reconnect() {
    this._finish?.({ kind: 'reconnect' });
    this._wait?.abort();
  }

  /** Stops the stream: closes the MQTT connection, ends iterators. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._stop.abort();
    this._finish?.({ kind: 'closed' });
    this._wait?.abort();
  }

  [Symbol.asyncIterator]() {
    const it = { queue: /** @type {MqchatEvent[]} */ ([]), wake: /** @type {?(() => void)} */ (null) };
    this._iterators.add(it);
    const stream = this;
    return {
      async next() {
        for (;;) {
          if (it.queue.length) return { value: it.queue.shift(), done: false };
          if (stream._state === 'closed' || stream._closed) {
            stream._iterators.delete(it);
            if (stream._error && !it.thrown) {
              it.thrown = true;
              throw stream._error;
            }
            return { value: undefined, done: true };
          }
          await new Promise((resolve) => (it.wake = resolve));
          it.wake = null;
        }
      },
      async return() {
        stream._iterators.delete(it);
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  // --- internals -------------------------------------------------------------

  /** @param {StreamState} state @param {?any} [error] */
  _setState(state, error = null) {
    if (this._state === state && !error) return;
    if (this._state === 'closed') return;
    this._state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, error } }));
    if (state === 'closed') for (const it of this._iterators) it.wake?.();
  }

  /** @param {MqchatEvent[]} events */
  _deliver(events) {
    for (const event of events) {
      if (this._closed) return;
      if (typeof event.cursor === 'number') this._lastCursor = Math.max(this._lastCursor, event.cursor);
      for (const it of this._iterators) {
        it.queue.push(event);
        it.wake?.();
      }
      // Listener exceptions are reported by the EventTarget, never thrown here.
      this.dispatchEvent(new CustomEvent('event', { detail: event }));
      if (event.type && event.type !== 'event' && event.type !== 'state' && event.type !== 'error') {
        this.dispatchEvent(new CustomEvent(event.type, { detail: event }));
      }
    }
  }

  /** @param {number} ms */
  async _sleep(ms) {
    this._wait = new AbortController();
    await sleep(ms, this._wait.signal);
    this._wait = null;
  }

  async _run() {
    try {
      const start = await this._startCursor();
      if (start === null) return;
      this._lastCursor = Math.max(this._lastCursor, start);
      const seq = new Sequencer(start);
      let attempt = 0;
      while (!this._closed) {
        const ended = await this._connection(seq);
        if (this._closed) break;
        if (ended.kind === 'fatal') throw ended.error;
        if (ended.kind === 'reconnect') {
          attempt = 0;
          continue;
        }
        if (ended.kind === 'lost' && ended.live) attempt = 0;
        // Another server, at once unless a whole round has failed since the
        // last connection that worked.
        if (ended.kind === 'lost' && this.urls.length > 1) {
          const next = (this.urls.indexOf(this.url) + 1) % this.urls.length;
          this.url = this.urls[next];
          if (next !== 0) {
            this._setState('waiting', ended.error ?? null);
            continue;
          }
        }
        if (ended.kind === 'refused') {
          try {
            await this.client._refresh(ended.generation);
          } catch (err) {
            if (!isTransient(err)) throw err;
          }
        }
        this._setState('waiting', ended.error ?? null);
        await this._sleep(this._backoff.delay(attempt));
        attempt += 1;
      }
    } catch (err) {
      this._error =
        err instanceof MqchatError ? err : new MqchatError(String(err?.message ?? err), { code: 'internal', cause: err });
      this.dispatchEvent(new CustomEvent('error', { detail: this._error }));
    } finally {
      this._closed = true;
      this._stop.abort();
      clearInterval(this._ackTimer);
      globalThis.removeEventListener?.('online', this._onOnline);
      this._setState('closed', this._error);
    }
  }

  /** The cursor to start after; `null` if closed meanwhile. @returns {Promise<?number>} */
  async _startCursor() {
    if (this._start === 'beginning') return 0;
    if (typeof this._start === 'number') return this._start;
    if (this._start !== 'now') {
      throw new MqchatError(`start must be 'beginning', 'now' or a cursor`, { code: 'invalid_input' });
    }
    let after = 0;
    let attempt = 0;
    while (!this._closed) {
      try {
        const page = await this.client.sync(after, MAX_SYNC_LIMIT, { signal: this._stop.signal });
        const next = Math.max(after, page.cursor);
        if (!page.has_more || next === after) return next;
        after = next;
      } catch (err) {
        if (this._closed) return null;
        if (!isTransient(err)) throw err;
        this._setState('waiting', err);
        await this._sleep(this._backoff.delay(attempt++));
        this._setState('connecting');
      }
    }
    return null;
  }

  /**
   * One MQTT connection, from CONNECT until it fails or the stream is closed.
   * @param {Sequencer} seq
   * @returns {Promise<{kind: 'lost', error: any, live: boolean} | {kind: 'refused', generation: number, error: any} | {kind: 'fatal', error: any} | {kind: 'closed'} | {kind: 'reconnect'}>}
   */
  async _connection(seq) {
    this._setState('connecting');
    let bearer;
    try {
      bearer = await this.client._bearer();
    } catch (error) {
      return isTransient(error) ? { kind: 'lost', error, live: false } : { kind: 'fatal', error };
    }
    if (this._closed) return { kind: 'closed' };
    const userId = this.client.userId;
    const prefix = `users/${userId}/`;
    const filter = `${prefix}#`;
    return new Promise((resolve) => {
      let done = false;
      let subscribed = false;
      let live = false;
      let syncing = false;
      const abort = new AbortController();
      const mq = this._lib.connect(this.url, {
        username: String(userId),
        password: bearer.token,
        clientId: this.deviceId,
        clean: true,
        keepalive: this._keepalive,
        protocolVersion: this._protocolVersion,
        reconnectPeriod: 0, // this stream reconnects itself, with a fresh token
        connectTimeout: this._connectTimeoutMs,
        resubscribe: false,
      });

      /** @param {any} ended */
      const finish = (ended) => {
        if (done) return;
        done = true;
        abort.abort();
        if (this._finish === finish) this._finish = null;
        try {
          mq.end(true);
        } catch {
          // already closed
        }
        resolve(ended);
      };
      this._finish = finish;
      /** @param {any} error */
      const lost = (error) => finish({ kind: 'lost', error, live });

      // Starts the next sync page if one is needed, else notes being caught up.
      const pump = () => {
        if (done || !subscribed || syncing) return;
        const after = seq.startSync();
        if (after !== null) {
          syncing = true;
          this._setState('syncing');
          this.client.sync(after, this._pageSize, { signal: abort.signal }).then(
            (page) => {
              if (done) return; // a stale answer: the next connection syncs again
              syncing = false;
              this._deliver(seq.onSyncPage(page));
              pump();
            },
            (error) => {
              if (done) return;
              syncing = false;
              seq.onSyncFailed();
              finish(isTransient(error) ? { kind: 'lost', error, live } : { kind: 'fatal', error });
            },
          );
        } else if (seq.isSynced()) {
          live = true;
          this._setState('live');
        }
      };

      mq.on('connect', () => {
        if (done) return;
        mq.subscribe(filter, { qos: 1 }, (err, granted) => {
          if (done) return;
          const refused =
            err || !Array.isArray(granted) || granted.some((g) => (g.qos ?? 0) >= 0x80 || (g.reasonCode ?? 0) >= 0x80);
          if (refused) {
            lost(new MqchatError(`subscribe ${filter} refused`, { code: 'subscribe_refused', cause: err }));
            return;
          }
          subscribed = true;
          seq.onConnected();
          pump();
        });
      });

      mq.on('message', (topic, payload) => {
        if (done || !topic.startsWith(prefix)) return;
        const sub = topic.slice(prefix.length);
        let event;
        try {
          event = JSON.parse(typeof payload === 'string' ? payload : new TextDecoder().decode(payload));
        } catch {
          return; // sync reads the store, so a gap this leaves is filled there
        }
        if (!event || typeof event !== 'object') return;
        if (sub === 'events') {
          if (seq.onPush(event) === 'deliver') this._deliver([event]);
          pump();
        } else if ((sub === 'presence' || sub === 'typing') && event.type === sub && event.cursor === undefined) {
          // Ephemeral: outside the cursor order, delivered now.
          this._deliver([event]);
        }
      });

      mq.on('error', (err) => {
        const code = err?.code;
        if (typeof code === 'number' && MQTT_REFUSED.has(code)) {
          finish({
            kind: 'refused',
            generation: bearer.generation,
            error: new MqchatError(`MQTT connection refused (code ${code})`, { code: 'mqtt_refused', cause: err }),
          });
        } else {
          lost(new MqchatError(`MQTT: ${err?.message ?? err}`, { code: 'mqtt', cause: err }));
        }
      });
      mq.on('close', () => lost(new MqchatError('MQTT connection closed', { code: 'mqtt_closed' })));
    });
  }

  /** @param {number} every */
  _startAcks(every) {
    let acked = this._lastCursor;
    let busy = false;
    this._ackTimer = setInterval(async () => {
      const cursor = this._lastCursor;
      if (busy || cursor <= acked || this._closed) return;
      busy = true;
      try {
        await this.client.ack(this.deviceId, cursor);
        acked = cursor;
      } catch {
        // advisory; tried again on the next tick
      } finally {
        busy = false;
      }
    }, every);
  }
}

export default Client;
