// SPDX-License-Identifier: Apache-2.0
//
// A browser (or Node.js 22+) client of Ember's gateway: one ES module, no build step, no
// dependencies. It speaks the protocol of docs/gateway.md over a WebSocket.
//
//   import { GateClient, Writer, decode, text } from "./ember-gate.js";
//   const client = await GateClient.connect("ws://127.0.0.1:7000/ws", "alice");
//   client.onPush = (route, payload) => { ... };        // payload: Uint8Array (protobuf)
//   client.onMoving = ({ urls, withinMs }) => { ... };  // the gateway drains: reconnect elsewhere
//   const reply = await client.call("lobby.RpcJoin", new Writer().string(1, "room-1").finish());
//   // A call answered `unavailable` (16: no instance could take it; it did not run) is sent
//   // again, with its seq, pausing 25 ms doubling to 1 s, for up to `retryMs` (10 s by default).
//   // { resume: true }: the session survives a lost connection (the client reconnects and
//   // resumes by itself; calls in flight are answered once, pushes arrive once, in order).
//   const fields = decode(reply);                       // Map: field number -> [values]
//   text(fields.get(1)[0]);                             // a string field
//
// Payloads are protobuf bytes. Writer and decode handle the wire format (varints and
// length-delimited fields), enough for the messages of a game; use a protobuf library for more.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Builds a protobuf message field by field. Zero, "" and empty bytes are skipped (proto3). */
export class Writer {
  constructor() {
    this.out = [];
  }
  varint(value) {
    let v = Number(value);
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`not a varint: ${value}`);
    while (v >= 0x80) {
      this.out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.out.push(v);
    return this;
  }
  tag(field, wireType) {
    return this.varint(field * 8 + wireType);
  }
  /** An unsigned integer (uint32, uint64 up to 2^53) or a non-negative int32/int64. */
  uint(field, value) {
    if (value) this.tag(field, 0).varint(value);
    return this;
  }
  bool(field, value) {
    if (value) this.tag(field, 0).varint(1);
    return this;
  }
  bytes(field, data) {
    if (data && data.length) {
      this.tag(field, 2).varint(data.length);
      for (const b of data) this.out.push(b);
    }
    return this;
  }
  string(field, value) {
    return this.bytes(field, value ? encoder.encode(value) : null);
  }
  /** A nested message, even an empty one (so that a oneof member is present). */
  message(field, writer) {
    const data = writer.finish();
    this.tag(field, 2).varint(data.length);
    for (const b of data) this.out.push(b);
    return this;
  }
  finish() {
    return Uint8Array.from(this.out);
  }
}

/** A protobuf message as a Map from field number to its values, in order: varints as Numbers,
 *  length-delimited fields as Uint8Array (decode them again, or text()). */
export function decode(data) {
  const fields = new Map();
  let at = 0;
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (at >= data.length) throw new Error("truncated varint");
      const b = data[at++];
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 0x80;
    }
  };
  while (at < data.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    let value;
    switch (tag & 7) {
      case 0:
        value = varint();
        break;
      case 1:
        value = data.subarray(at, at + 8);
        at += 8;
        break;
      case 2: {
        const length = varint();
        if (at + length > data.length) throw new Error("truncated field");
        value = data.subarray(at, at + length);
        at += length;
        break;
      }
      case 5:
        value = data.subarray(at, at + 4);
        at += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${tag & 7}`);
    }
    if (!fields.has(field)) fields.set(field, []);
    fields.get(field).push(value);
  }
  return fields;
}

/** UTF-8 text of a length-delimited field. */
export function text(bytes) {
  return bytes ? decoder.decode(bytes) : "";
}

const first = (fields, n, fallback) => (fields.has(n) ? fields.get(n)[0] : fallback);

/** Ember's error code for "nothing could take the request now; it did not run". */
export const UNAVAILABLE = 16;
/** Kick code: the gateway refused a resume (the session ended, or pushes were lost). */
export const RESUME_FAILED = 11;

/** A failed call: `code` is Ember's error code (docs/gateway.md), `message` says why. */
export class GateError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class GateClient {
  /** Opens a WebSocket, logs in with `token`, and resolves once the gateway welcomed it.
   *  `resume: true` keeps the session across lost connections: the client reconnects by itself
   *  (to the URLs of a Moving frame first, then `url`, then `resumeUrls`) within the gateway's
   *  resume window; calls in flight stay pending and are answered once, pushes arrive once and in
   *  order. `onResume` is called after each resume. */
  static connect(
    url,
    token,
    { client = "ember-gate.js", timeoutMs = 10000, retryMs = 10000, resume = false, resumeUrls = [] } = {},
  ) {
    return new Promise((resolve, reject) => {
      const c = new GateClient(url, { client, retryMs, resume, resumeUrls });
      const timer = setTimeout(() => {
        c._refused = null;
        c._end("no welcome in time");
        reject(new GateError(4, "no welcome in time"));
      }, timeoutMs);
      c._welcomed = () => {
        clearTimeout(timer);
        resolve(c);
      };
      c._refused = (reason) => {
        clearTimeout(timer);
        reject(new GateError(3, reason));
      };
      c._open(url, new Writer().uint(1, 1).string(2, token).string(3, client).bool(6, resume));
    });
  }

  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.retryMs = options.retryMs;
    this.session = "";
    this.uid = "";
    this.routes = new Map();
    this.pending = new Map();
    this.nextSeq = 1;
    this.onPush = null;
    this.onClose = null;
    this.onMoving = null;
    this.onResume = null;
    this.moving = null;
    this.kicked = null;
    this.retries = 0;
    this.resumes = 0;
    this.ws = null;
    this.live = false; // the current connection has its Welcome
    this.ended = false;
    this.leaving = false;
    this.resumeToken = null;
    this.resumeWindowMs = 0;
    this.lastPushSeq = 0;
    this.lostAt = 0;
    this.attempts = 0;
    this.movingUrls = [];
  }

  /** Calls a route ("service.Method") with protobuf bytes; resolves to the response's bytes. */
  call(route, payload = new Uint8Array()) {
    if (this.ended) return Promise.reject(new GateError(14, "the client is closed"));
    const seq = this.nextSeq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject, route, payload, giveUp: Date.now() + this.retryMs, pause: 0 });
      if (this.live) this._send(seq, route, payload); // resuming: it goes once the session is back
    });
  }

  /** A request that is never answered. */
  notify(route, payload = new Uint8Array()) {
    if (this.live) this._send(0, route, payload);
  }

  /** Leaves: Bye tells the gateway the session ends now. */
  close() {
    this.leaving = true;
    if (this.live && this.ws.readyState === 1) this.ws.send(new Writer().message(4, new Writer()).finish());
    if (this.live) this.ws.close();
    else this._end("closed by the client");
  }

  /** Cuts the connection without a word, as a network failure does (to try resume). */
  drop() {
    this.ws?.close();
  }

  _open(url, hello) {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => ws.send(new Writer().message(1, hello).finish());
    ws.onmessage = (event) => {
      if (this.ws === ws) this._frame(new Uint8Array(event.data));
    };
    ws.onclose = () => {
      if (this.ws === ws) this._lost();
    };
    ws.onerror = () => {};
  }

  _ack() {
    let lowest = this.nextSeq;
    for (const seq of this.pending.keys()) lowest = Math.min(lowest, seq);
    return lowest;
  }

  _send(seq, route, payload) {
    const request = new Writer().uint(1, seq);
    if (this.routes.has(route)) request.uint(2, this.routes.get(route));
    else request.string(3, route);
    request.bytes(4, payload);
    if (this.options.resume) request.uint(5, this._ack());
    this.ws.send(new Writer().message(2, request).finish());
  }

  _frame(bytes) {
    const frame = decode(bytes);
    if (frame.has(1)) {
      const w = decode(first(frame, 1));
      this.session = text(first(w, 2));
      this.uid = text(first(w, 3));
      this.routes = new Map(); // the ids are this gateway's
      for (const entry of w.get(5) || []) {
        const e = decode(entry);
        this.routes.set(text(first(e, 1)), first(e, 2, 0));
      }
      this.resumeToken = first(w, 8, null);
      this.resumeWindowMs = first(w, 10, 0);
      this.live = true;
      this.lostAt = 0;
      this.attempts = 0;
      this.kicked = null;
      clearInterval(this.heartbeat);
      const heartbeat = first(w, 4, 10000);
      this.heartbeat = setInterval(() => {
        if (this.live && this.ws.readyState === 1) {
          const beat = new Writer().uint(1, Date.now());
          if (this.options.resume) beat.uint(2, this._ack()).uint(3, this.lastPushSeq);
          this.ws.send(new Writer().message(3, beat).finish());
        }
      }, heartbeat);
      if (first(w, 9, 0)) {
        // Resumed: what is unanswered goes again, with its seq; it runs once.
        this.resumes++;
        for (const [seq, call] of this.pending) this._send(seq, call.route, call.payload);
        this.onResume?.();
      } else {
        this._welcomed?.();
      }
    } else if (frame.has(2)) {
      const r = decode(first(frame, 2));
      const seq = first(r, 1, 0);
      const call = this.pending.get(seq);
      if (!call) return;
      const routeId = first(r, 5, 0);
      if (routeId) this.routes.set(call.route, routeId);
      const status = first(r, 2, 0);
      if (status === UNAVAILABLE) {
        call.pause = call.pause ? Math.min(call.pause * 2, 1000) : 25;
        if (Date.now() + call.pause < call.giveUp) {
          this.retries++;
          setTimeout(() => {
            // Not live: a resume sends it, as it sends everything unanswered.
            if (this.pending.get(seq) === call && this.live && this.ws.readyState === 1) {
              this._send(seq, call.route, call.payload);
            }
          }, call.pause);
          return;
        }
      }
      this.pending.delete(seq);
      if (status === 0) call.resolve(first(r, 4, new Uint8Array()));
      else call.reject(new GateError(status, text(first(r, 3))));
    } else if (frame.has(3)) {
      const p = decode(first(frame, 3));
      const pushSeq = first(p, 4, 0);
      if (pushSeq) {
        if (pushSeq <= this.lastPushSeq) return; // had it before the resume
        this.lastPushSeq = pushSeq;
      }
      let route = text(first(p, 2));
      if (!route) {
        const id = first(p, 1, 0);
        for (const [name, rid] of this.routes) if (rid === id) route = name;
      }
      this.onPush?.(route, first(p, 3, new Uint8Array()));
    } else if (frame.has(6)) {
      // The gateway drains: reconnect to one of these URLs (a resumable client moves at once,
      // with what it has in flight; others once their pending calls settled).
      const m = decode(first(frame, 6));
      const urls = (m.get(1) || []).map(text);
      this.moving = { urls, withinMs: first(m, 2, 0) };
      this.onMoving?.(this.moving);
      if (this.options.resume && this.resumeToken) {
        this.movingUrls = urls;
        this.ws.close();
      }
    } else if (frame.has(5)) {
      const k = decode(first(frame, 5));
      this.kicked = { code: first(k, 1, 0), reason: text(first(k, 2)), live: this.live };
    }
  }

  /** The connection closed: the session ends, or (resumable) the client reconnects. */
  _lost() {
    clearInterval(this.heartbeat);
    const wasLive = this.live;
    this.live = false;
    if (this.ended) return;
    const k = this.kicked;
    // A kick of the live session ends it; a refused resume too. Another kick during a resume
    // attempt (that gateway is stopping) only means: try the next address.
    const over = k && (k.live || k.code === RESUME_FAILED);
    if (!this.options.resume || !this.resumeToken || this.leaving || over) {
      this._end(k ? k.reason : "the connection closed");
      return;
    }
    this.kicked = null;
    if (wasLive || !this.lostAt) this.lostAt = Date.now();
    if (Date.now() - this.lostAt > this.resumeWindowMs) {
      this._end("no resume within the gateway's resume window");
      return;
    }
    const urls = [...this.movingUrls, this.url, ...this.options.resumeUrls];
    const url = urls[this.attempts % urls.length];
    const delay = this.attempts === 0 ? 0 : Math.min(1000, 50 * 2 ** this.attempts);
    this.attempts++;
    const hello = new Writer()
      .uint(1, 1)
      .string(3, this.options.client)
      .string(4, this.session)
      .bytes(5, this.resumeToken)
      .bool(6, true)
      .uint(7, this.lastPushSeq);
    setTimeout(() => {
      if (!this.ended) this._open(url, hello);
    }, delay);
  }

  _end(why) {
    if (this.ended) return;
    this.ended = true;
    this.live = false;
    clearInterval(this.heartbeat);
    if (this.ws && this.ws.readyState <= 1) this.ws.close();
    if (!this.session) this._refused?.(why);
    for (const call of this.pending.values()) call.reject(new GateError(14, why));
    this.pending.clear();
    this.onClose?.(this.kicked);
  }
}
