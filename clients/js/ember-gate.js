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

/** A failed call: `code` is Ember's error code (docs/gateway.md), `message` says why. */
export class GateError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class GateClient {
  /** Opens a WebSocket, logs in with `token`, and resolves once the gateway welcomed it. */
  static connect(url, token, { client = "ember-gate.js", timeoutMs = 10000, retryMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      const c = new GateClient(ws);
      c.retryMs = retryMs;
      const timer = setTimeout(() => {
        ws.close();
        reject(new GateError(4, "no welcome in time"));
      }, timeoutMs);
      c._welcomed = (welcome) => {
        clearTimeout(timer);
        resolve(c);
      };
      c._refused = (reason) => {
        clearTimeout(timer);
        reject(new GateError(3, reason));
      };
      ws.onopen = () => {
        const hello = new Writer().uint(1, 1).string(2, token).string(3, client);
        ws.send(new Writer().message(1, hello).finish());
      };
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.session = "";
    this.uid = "";
    this.routes = new Map();
    this.pending = new Map();
    this.nextSeq = 1;
    this.onPush = null;
    this.onClose = null;
    this.onMoving = null;
    this.moving = null;
    this.kicked = null;
    this.retryMs = 10000;
    this.retries = 0;
    ws.onmessage = (event) => this._frame(new Uint8Array(event.data));
    ws.onclose = () => this._closed();
    ws.onerror = () => {};
  }

  /** Calls a route ("service.Method") with protobuf bytes; resolves to the response's bytes. */
  call(route, payload = new Uint8Array()) {
    const seq = this.nextSeq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject, route, payload, giveUp: Date.now() + this.retryMs, pause: 0 });
      this._send(seq, route, payload);
    });
  }

  /** A request that is never answered. */
  notify(route, payload = new Uint8Array()) {
    this._send(0, route, payload);
  }

  /** Leaves: Bye tells the gateway the session ends now. */
  close() {
    if (this.ws.readyState === 1) this.ws.send(new Writer().message(4, new Writer()).finish());
    this.ws.close();
  }

  _send(seq, route, payload) {
    const request = new Writer().uint(1, seq);
    if (this.routes.has(route)) request.uint(2, this.routes.get(route));
    else request.string(3, route);
    request.bytes(4, payload);
    this.ws.send(new Writer().message(2, request).finish());
  }

  _frame(bytes) {
    const frame = decode(bytes);
    if (frame.has(1)) {
      const w = decode(first(frame, 1));
      this.session = text(first(w, 2));
      this.uid = text(first(w, 3));
      for (const entry of w.get(5) || []) {
        const e = decode(entry);
        this.routes.set(text(first(e, 1)), first(e, 2, 0));
      }
      const heartbeat = first(w, 4, 10000);
      this.heartbeat = setInterval(() => {
        if (this.ws.readyState === 1) {
          this.ws.send(new Writer().message(3, new Writer().uint(1, Date.now())).finish());
        }
      }, heartbeat);
      this._welcomed?.();
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
            if (this.pending.get(seq) === call && this.ws.readyState === 1) {
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
      let route = text(first(p, 2));
      if (!route) {
        const id = first(p, 1, 0);
        for (const [name, rid] of this.routes) if (rid === id) route = name;
      }
      this.onPush?.(route, first(p, 3, new Uint8Array()));
    } else if (frame.has(6)) {
      // The gateway drains: reconnect to one of these URLs once the pending calls settled.
      const m = decode(first(frame, 6));
      const urls = (m.get(1) || []).map(text);
      this.moving = { urls, withinMs: first(m, 2, 0) };
      this.onMoving?.(this.moving);
    } else if (frame.has(5)) {
      const k = decode(first(frame, 5));
      this.kicked = { code: first(k, 1, 0), reason: text(first(k, 2)) };
      if (this._refused && !this.session) this._refused(this.kicked.reason);
    }
  }

  _closed() {
    clearInterval(this.heartbeat);
    const why = this.kicked ? this.kicked.reason : "the connection closed";
    if (this._refused && !this.session) this._refused(why);
    for (const call of this.pending.values()) call.reject(new GateError(14, why));
    this.pending.clear();
    this.onClose?.(this.kicked);
  }
}
