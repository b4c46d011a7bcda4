// marmot.js: the browser client of a marmot server (an ES module with no
// dependencies and no build step). Its API mirrors the Go client
// (marmot.Client): connect/disconnect, states with descriptions, events,
// send, commands, request/reply, fixed or exponential reconnect with
// jitter, rooms with recovery, the secure encryption profile through
// WebCrypto, and a fallback to the HTTP transport when WebSocket is missing
// or its upgrade is refused. Wire formats: docs/PROTOCOL.md (marmot.json.v1,
// and marmot.v1 inside encrypted frames); API: docs/BROWSER.md.

/** Connection states, named as in the Go client. */
export const State = Object.freeze({
  Disconnected: 'disconnected',
  Connecting: 'connecting',
  Connected: 'connected',
  Reconnecting: 'reconnecting',
  Disconnecting: 'disconnecting',
  Error: 'error',
});

const descriptions = {
  disconnected: 'Disconnected from server',
  connecting: 'Connecting to server...',
  connected: 'Connected to server',
  reconnecting: 'Reconnecting to server...',
  disconnecting: 'Disconnecting from server...',
  error: 'Connection error',
};

/** describeState returns the human description of a state, as the seed words it. */
export function describeState(s) {
  return descriptions[s] || 'Unknown state';
}

/** MarmotError is the base of every error this module throws or rejects with. */
export class MarmotError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'MarmotError';
  }
}

/** RemoteError is an error reply from the server: code and its message. */
export class RemoteError extends MarmotError {
  constructor(code, message) {
    super(`marmot: remote error ${code}: ${message}`);
    this.name = 'RemoteError';
    this.code = code;
    this.remoteMessage = message;
  }
}

/** TimeoutError: a request or a connection attempt did not finish in time. */
export class TimeoutError extends MarmotError {
  constructor(message) {
    super(message);
    this.name = 'TimeoutError';
  }
}

/** ClosedError: the connection is not open, or closed before the answer came. */
export class ClosedError extends MarmotError {
  constructor(message, code = 1006, reason = '') {
    super(message);
    this.name = 'ClosedError';
    this.code = code;
    this.reason = reason;
  }
}

/** EncryptionError: the secure handshake failed (wrong key, mode mismatch, a mode WebCrypto lacks). */
export class EncryptionError extends MarmotError {
  constructor(message, closeReason = 'handshake failed') {
    super(message);
    this.name = 'EncryptionError';
    /** The reason of the 4501 close this client sends for it. */
    this.closeReason = closeReason;
  }
}

// Close codes after which a client does not come back (README, "Reconnect").
function noReconnect(code) {
  return [1000, 1002, 1003, 1007, 1008, 1009, 1010].includes(code) || (code >= 4500 && code <= 4999);
}

// ---------------------------------------------------------------- bytes

const enc = new TextEncoder();
const strictDec = new TextDecoder('utf-8', { fatal: true });
const looseDec = new TextDecoder('utf-8');

function toBytes(d) {
  if (d == null) return new Uint8Array(0);
  if (typeof d === 'string') return enc.encode(d);
  if (d instanceof Uint8Array) return d;
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  throw new MarmotError('marmot: payload must be a string, Uint8Array or ArrayBuffer');
}

function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function b64encode(b) {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s);
}

function b64decode(s) {
  const bin = atob(s);
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}

// ---------------------------------------------------------------- messages

const KINDS = ['', 'data', 'command', 'request', 'reply', 'error'];

/**
 * Message is one envelope received from the server. payload is the raw
 * bytes, text the payload as UTF-8; a request from the server is answered
 * with reply or replyError.
 */
export class Message {
  constructor(env, client) {
    this.kind = env.kind;
    this.id = env.id || 0;
    this.name = env.name || '';
    this.code = env.code || 0;
    this.meta = env.meta || {};
    this.room = env.room || '';
    this.offset = env.offset || 0;
    this._p = env.payload;
    this._client = client;
  }
  /** The payload as bytes. */
  get payload() {
    if (typeof this._p === 'string') this._p = enc.encode(this._p);
    return this._p || new Uint8Array(0);
  }
  /** The payload as text (invalid UTF-8 replaced). */
  get text() {
    return typeof this._p === 'string' ? this._p : looseDec.decode(this._p || new Uint8Array(0));
  }
  /** The payload parsed as JSON. */
  json() {
    return JSON.parse(this.text);
  }
  /** Answers a request from the server. */
  reply(data) {
    if (this.kind !== 'request') throw new MarmotError('marmot: only a request can be answered');
    this._client._write({ kind: 'reply', id: this.id, payload: data });
  }
  /** Answers a request from the server with an error. */
  replyError(code, text) {
    if (this.kind !== 'request') throw new MarmotError('marmot: only a request can be answered');
    this._client._write({ kind: 'error', id: this.id, code, payload: text });
  }
}

// marmot.json.v1 (PROTOCOL.md section 3): deterministic member order.
function encodeJSON(e) {
  const o = { v: 1, kind: e.kind };
  if (e.id) o.id = e.id;
  if (e.name) o.name = e.name;
  if (e.code) o.code = e.code;
  if (e.meta && Object.keys(e.meta).length) {
    const m = {};
    for (const k of Object.keys(e.meta).sort()) m[k] = String(e.meta[k]);
    o.meta = m;
  }
  if (e.room) o.room = e.room;
  if (e.offset) o.offset = e.offset;
  if (e.epoch) o.epoch = e.epoch;
  const p = e.payload;
  if (typeof p === 'string') {
    if (p !== '') o.payload = p.toWellFormed ? p.toWellFormed() : p;
  } else if (p != null) {
    const b = toBytes(p);
    if (b.length) {
      try {
        o.payload = strictDec.decode(b);
      } catch {
        o.payload_b64 = b64encode(b);
      }
    }
  }
  return JSON.stringify(o);
}

function decodeJSON(text) {
  let o;
  try {
    o = JSON.parse(text);
  } catch (err) {
    throw new MarmotError('marmot: malformed JSON envelope', { cause: err });
  }
  if (o === null || typeof o !== 'object' || o.v !== 1 || !KINDS.includes(o.kind) || o.kind === '') {
    throw new MarmotError('marmot: malformed JSON envelope');
  }
  const e = {
    kind: o.kind, id: o.id || 0, name: o.name || '', code: o.code || 0, meta: o.meta || {},
    room: o.room || '', offset: o.offset || 0, epoch: o.epoch || '', payload: '',
  };
  if (typeof o.payload === 'string') e.payload = o.payload;
  else if (typeof o.payload_b64 === 'string') e.payload = b64decode(o.payload_b64);
  return e;
}

// marmot.v1 (PROTOCOL.md section 2), used inside encrypted frames.
const F_ID = 0x01, F_NAME = 0x02, F_META = 0x04, F_CODE = 0x08, F_ROOM = 0x10, F_OFFSET = 0x20, F_EPOCH = 0x40;

function putUvarint(out, v) {
  if (!Number.isSafeInteger(v) || v < 0) throw new MarmotError('marmot: integer out of range');
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

function putString(out, s) {
  const b = enc.encode(s);
  putUvarint(out, b.length);
  for (const x of b) out.push(x);
}

function encodeBinary(e) {
  const kind = KINDS.indexOf(e.kind);
  let flags = 0;
  const metaKeys = e.meta ? Object.keys(e.meta).sort((a, b) => {
    const x = enc.encode(a), y = enc.encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  }) : [];
  if (e.id) flags |= F_ID;
  if (e.name) flags |= F_NAME;
  if (metaKeys.length) flags |= F_META;
  if (e.code) flags |= F_CODE;
  if (e.room) flags |= F_ROOM;
  if (e.offset) flags |= F_OFFSET;
  if (e.epoch) flags |= F_EPOCH;
  const h = [1, kind, flags];
  if (e.id) putUvarint(h, e.id);
  if (e.name) putString(h, e.name);
  if (e.code) putUvarint(h, e.code);
  if (metaKeys.length) {
    putUvarint(h, metaKeys.length);
    for (const k of metaKeys) {
      putString(h, k);
      putString(h, String(e.meta[k]));
    }
  }
  if (e.room) putString(h, e.room);
  if (e.offset) putUvarint(h, e.offset);
  if (e.epoch) putString(h, e.epoch);
  return concat(new Uint8Array(h), toBytes(e.payload));
}

function decodeBinary(b) {
  const bad = () => new MarmotError('marmot: malformed binary envelope');
  if (b.length < 3 || b[0] !== 1 || b[1] < 1 || b[1] > 5 || b[2] & 0x80) throw bad();
  let i = 3;
  const uv = () => {
    let v = 0, mul = 1;
    for (let n = 0; n < 10; n++) {
      if (i >= b.length) throw bad();
      const x = b[i++];
      v += (x & 0x7f) * mul;
      if (x < 0x80) {
        if (!Number.isSafeInteger(v) || (n > 0 && x === 0)) throw bad();
        return v;
      }
      mul *= 0x80;
    }
    throw bad();
  };
  const str = (max) => {
    const n = uv();
    if (n > max || i + n > b.length) throw bad();
    const s = strictDec.decode(b.subarray(i, i + n));
    i += n;
    return s;
  };
  const f = b[2];
  const e = { kind: KINDS[b[1]], id: 0, name: '', code: 0, meta: {}, room: '', offset: 0, epoch: '' };
  if (f & F_ID) e.id = uv();
  if (f & F_NAME) e.name = str(255);
  if (f & F_CODE) e.code = uv();
  if (f & F_META) {
    const n = uv();
    if (n > 32) throw bad();
    for (let k = 0; k < n; k++) {
      const key = str(64);
      e.meta[key] = str(1024);
    }
  }
  if (f & F_ROOM) e.room = str(255);
  if (f & F_OFFSET) e.offset = uv();
  if (f & F_EPOCH) e.epoch = str(64);
  e.payload = b.slice(i);
  return e;
}

// ---------------------------------------------------------------- encryption

// The secure profile (docs/ENCRYPTION.md section 2) through WebCrypto.
// WebCrypto has AES-GCM, AES-CBC and AES-CTR at 128 and 256 bits (Chromium
// has no 192-bit AES), PBKDF2, HKDF and HMAC; CFB and OFB are built from
// AES-CBC. ECB, CFC/OFC/CTC, AES-192, Argon2id and the compat profile are
// refused with an EncryptionError.
const MODES = { ecb: 0, cbc: 1, cfb: 2, ofb: 3, ctr: 4, gcm: 5, cfc: 6, ofc: 7, ctc: 8 };
const MODE_NAMES = Object.keys(MODES);
const SIZES = { 128: 0, 192: 1, 256: 2 };
const SIZE_BITS = [128, 192, 256];
/** The modes and key sizes this module can do in a browser. */
export const browserModes = Object.freeze(['gcm', 'cbc', 'ctr', 'cfb', 'ofb']);
export const browserKeySizes = Object.freeze([128, 256]);

const subtle = globalThis.crypto && globalThis.crypto.subtle;
const masterCache = new Map(); // salt+iterations → master key bytes; at most 8

function ascii(s) {
  return enc.encode(s);
}

function ctEqual(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

async function hmac(key, data) {
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, data));
}

async function pbkdf2(pass, salt, iterations) {
  const id = b64encode(salt) + '/' + iterations + '/' + pass.length;
  const hit = masterCache.get(id);
  if (hit && ctEqual(hit.pass, await sha256(enc.encode(pass)))) return hit.key;
  const base = await subtle.importKey('raw', enc.encode(pass), 'PBKDF2', false, ['deriveBits']);
  const key = new Uint8Array(await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, base, 256));
  if (masterCache.size >= 8) masterCache.delete(masterCache.keys().next().value);
  masterCache.set(id, { key, pass: await sha256(enc.encode(pass)) });
  return key;
}

async function sha256(b) {
  return new Uint8Array(await subtle.digest('SHA-256', b));
}

function negotiate(ours, peers, peerAccepts, weAccept) {
  if (ours === peers || peerAccepts) return ours;
  if (weAccept) return peers;
  return -1;
}

function u32(b, o) {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

function putU32(b, o, v) {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

// One direction of a session: its keys and sequence number.
class Direction {
  static async create(hkdfKey, salt, label, th, mode, size) {
    const kb = SIZE_BITS[size] / 8;
    const info = concat(ascii(label), new Uint8Array([mode, size]), th);
    const okm = new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, hkdfKey, (kb + 48) * 8));
    const d = new Direction();
    d.mode = mode;
    d.seq = 0;
    d.hdr = new Uint8Array(16);
    d.hdr.set([0x4d, 0x52, 0x4f, 0x4d]);
    putU32(d.hdr, 4, mode);
    putU32(d.hdr, 8, size);
    d.hdr[12] = 1;
    const encKey = okm.slice(0, kb), macKey = okm.slice(kb, kb + 32), ivKey = okm.slice(kb + 32, kb + 48);
    // CFB and OFB are built from AES-CBC (see crypt).
    const algo = { 5: 'AES-GCM', 1: 'AES-CBC', 4: 'AES-CTR', 2: 'AES-CBC', 3: 'AES-CBC' }[mode];
    d.key = await subtle.importKey('raw', encKey, algo, false, ['encrypt', 'decrypt']);
    if (mode === MODES.gcm) {
      d.gcmIV = ivKey.slice(0, 12);
      d.tagLen = 16;
    } else {
      d.mac = await subtle.importKey('raw', macKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
      d.ivKey = await subtle.importKey('raw', ivKey, 'AES-CBC', false, ['encrypt']);
      d.tagLen = 32;
    }
    return d;
  }

  prefix(seq, len) {
    const p = new Uint8Array(28);
    p.set(this.hdr);
    putU32(p, 16, seq % 0x100000000);
    putU32(p, 20, Math.floor(seq / 0x100000000));
    putU32(p, 24, len);
    return p;
  }

  // IV = AES-128(K_iv, seq LE ‖ 0⁸): one block through CBC with a zero IV.
  async iv(seq) {
    const blk = new Uint8Array(16);
    putU32(blk, 0, seq % 0x100000000);
    putU32(blk, 4, Math.floor(seq / 0x100000000));
    const out = await subtle.encrypt({ name: 'AES-CBC', iv: new Uint8Array(16) }, this.ivKey, blk);
    return new Uint8Array(out, 0, 16);
  }

  gcmNonce(seq) {
    const n = this.gcmIV.slice();
    let s = seq;
    for (let i = 11; i >= 4; i--) {
      n[i] ^= s % 256;
      s = Math.floor(s / 256);
    }
    return n;
  }

  // block is one AES encryption: the first block of AES-CBC with a zero IV.
  async block(x) {
    return new Uint8Array(await subtle.encrypt({ name: 'AES-CBC', iv: new Uint8Array(16) }, this.key, x), 0, 16);
  }

  // crypt runs CBC, CTR, CFB-128 or OFB over data with iv, as crypto/cipher.go does.
  async crypt(enc, iv, data) {
    const m = this.mode;
    if (m === MODES.cbc || m === MODES.ctr) {
      const algo = m === MODES.cbc ? { name: 'AES-CBC', iv } : { name: 'AES-CTR', counter: iv, length: 128 };
      return new Uint8Array(await (enc ? subtle.encrypt(algo, this.key, data) : subtle.decrypt(algo, this.key, data)));
    }
    const out = new Uint8Array(data.length);
    const xor = (ks, at) => {
      for (let j = 0; j < 16 && at + j < data.length; j++) out[at + j] = data[at + j] ^ ks[j];
    };
    if (m === MODES.ofb) {
      // CBC over zeros is E(IV), E(E(IV)), ...: OFB's keystream, in one call.
      const n = Math.ceil(data.length / 16) * 16;
      const ks = new Uint8Array(await subtle.encrypt({ name: 'AES-CBC', iv }, this.key, new Uint8Array(n)));
      for (let i = 0; i < data.length; i += 16) xor(ks.subarray(i, i + 16), i);
      return out;
    }
    // CFB: each keystream block is E(previous ciphertext block). Decrypting
    // knows them all at once; encrypting waits for each block in turn.
    if (!enc) {
      const regs = [iv];
      for (let i = 16; i < data.length; i += 16) regs.push(data.subarray(i - 16, i));
      const kss = await Promise.all(regs.map((r) => this.block(r)));
      kss.forEach((ks, k) => xor(ks, k * 16));
      return out;
    }
    let reg = iv;
    for (let i = 0; i < data.length; i += 16) {
      xor(await this.block(reg), i);
      reg = out.subarray(i, i + 16);
    }
    return out;
  }

  async seal(plain) {
    const seq = this.seq++;
    if (this.mode === MODES.gcm) {
      const p = this.prefix(seq, plain.length);
      const ct = await subtle.encrypt({ name: 'AES-GCM', iv: this.gcmNonce(seq), additionalData: p, tagLength: 128 }, this.key, plain);
      return concat(p, new Uint8Array(ct));
    }
    const ct = await this.crypt(true, await this.iv(seq), plain);
    const head = concat(this.prefix(seq, ct.length), ct);
    return concat(head, new Uint8Array(await subtle.sign('HMAC', this.mac, head)));
  }

  async open(frame) {
    if (frame.length < 28 || !ctEqual(frame.subarray(0, 4), this.hdr.subarray(0, 4))) throw new EncryptionError('marmot: not an encrypted frame');
    if (!ctEqual(frame.subarray(0, 16), this.hdr)) throw new EncryptionError('marmot: frame in another mode or key size');
    const len = u32(frame, 24);
    if (frame.length !== 28 + len + this.tagLen) throw new EncryptionError('marmot: truncated or malformed frame');
    const seq = u32(frame, 16) + u32(frame, 20) * 0x100000000;
    const p = frame.subarray(0, 28);
    let plain;
    if (this.mode === MODES.gcm) {
      try {
        plain = await subtle.decrypt({ name: 'AES-GCM', iv: this.gcmNonce(seq), additionalData: p, tagLength: 128 }, this.key, frame.subarray(28));
      } catch {
        throw new EncryptionError('marmot: frame failed authentication');
      }
    } else {
      const ok = await subtle.verify('HMAC', this.mac, frame.subarray(28 + len), frame.subarray(0, 28 + len));
      if (!ok) throw new EncryptionError('marmot: frame failed authentication');
    }
    if (seq !== this.seq) throw new EncryptionError(seq < this.seq ? 'marmot: replayed frame' : 'marmot: frame out of order');
    if (this.mode !== MODES.gcm) plain = await this.crypt(false, await this.iv(seq), frame.subarray(28, 28 + len));
    this.seq++;
    return new Uint8Array(plain);
  }
}

// clientHandshake answers a ServerHello: it returns the ClientHello to send
// and a function that checks the ServerFinished and yields the session.
async function clientHandshake(cfg, sh) {
  if (!subtle) throw new EncryptionError('marmot: WebCrypto is not available (a secure context, https or localhost, is needed)');
  if (sh.length < 56 || sh[0] !== 0x4d || sh[1] !== 0x52 || sh[2] !== 0x53 || sh[3] !== 0x48 || (sh[4] !== 1 && sh[4] !== 2)) {
    throw new EncryptionError('marmot: handshake failed: not a ServerHello');
  }
  // Version 1 has no forward secrecy (docs/ENCRYPTION.md 2.3). A version-2
  // server sends it only if our marmot_handshake=2 was removed in transit:
  // its nonce then ends with "MRDOWNG2". Refuse both (no legacy option here).
  if (sh[4] === 1) {
    const sentinel = ascii('MRDOWNG2').every((b, i) => sh[48 + i] === b);
    throw new EncryptionError(sentinel
      ? 'marmot: downgrade refused: the server was told this client does not speak handshake version 2 (marmot_handshake removed in transit?)'
      : 'marmot: downgrade refused: the server speaks only handshake version 1 (no forward secrecy)', 'downgrade refused');
  }
  const fixed = 88; // version 2: the server's X25519 key at 56..87, then the salt
  const saltLen = sh[11];
  if (saltLen < 16 || saltLen > 64 || sh.length !== fixed + saltLen || sh[21] | sh[22] | sh[23]) {
    throw new EncryptionError('marmot: handshake failed: malformed ServerHello');
  }
  if (sh[7] !== 0) throw new EncryptionError('marmot: the server uses Argon2id, which WebCrypto cannot do (use PBKDF2 on the server)');
  const iterations = u32(sh, 12);
  if (iterations < 100000 || iterations > 10000000) throw new EncryptionError(`marmot: server KDF iterations ${iterations} outside 100000..10000000`);
  const sAccModes = sh[8] | (sh[9] << 8), sAccSizes = sh[10];
  const mine = MODES[cfg.mode], myKs = SIZES[cfg.keySize];
  const accM = cfg.acceptModes.reduce((m, x) => m | (1 << MODES[x]), 0);
  const accK = cfg.acceptKeySizes.reduce((m, x) => m | (1 << SIZES[x]), 0);
  const mode = negotiate(mine, sh[5], (sAccModes >> mine) & 1, (accM >> sh[5]) & 1);
  const size = negotiate(myKs, sh[6], (sAccSizes >> myKs) & 1, (accK >> sh[6]) & 1);
  if (mode < 0 || size < 0) {
    throw new EncryptionError(`marmot: mode mismatch: we use ${cfg.mode}/${cfg.keySize}, the server ${MODE_NAMES[sh[5]]}/${SIZE_BITS[sh[6]]}`);
  }
  const salt = sh.slice(fixed), sn = sh.slice(24, 56);
  const master = await pbkdf2(cfg.key, salt, iterations);
  // The ephemeral X25519 exchange (forward secrecy); WebCrypto throws on a
  // low-order server key, which fails the handshake.
  const kp = await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
  const pub = new Uint8Array(await subtle.exportKey('raw', kp.publicKey));
  let dh;
  try {
    const serverKey = await subtle.importKey('raw', sh.slice(56, 88), { name: 'X25519' }, true, []);
    dh = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: serverKey }, kp.privateKey, 256));
  } catch {
    throw new EncryptionError('marmot: handshake failed: invalid X25519 key from the server');
  }
  const cn = crypto.getRandomValues(new Uint8Array(32));
  const ch = new Uint8Array(104);
  ch.set([0x4d, 0x52, 0x43, 0x48, 2, mode, size, 0]);
  ch.set(cn, 8);
  ch.set(pub, 40);
  const th = await sha256(concat(sh, ch.subarray(0, 72)));
  const hk = await subtle.importKey('raw', concat(master, dh), 'HKDF', false, ['deriveBits']);
  const hsalt = concat(cn, sn);
  const expand = async (label, n) => new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: hsalt, info: concat(ascii(label), th) }, hk, n * 8));
  const clientTag = await hmac(await expand('marmot v2 confirm c2s', 32), th);
  ch.set(clientTag, 72);
  const finish = async (sf) => {
    if (sf.length !== 40 || sf[0] !== 0x4d || sf[1] !== 0x52 || sf[2] !== 0x53 || sf[3] !== 0x46 || sf[4] !== 2 || sf[5] | sf[6] | sf[7]) {
      throw new EncryptionError('marmot: handshake failed: malformed ServerFinished');
    }
    const want = await hmac(await expand('marmot v2 confirm s2c', 32), concat(th, clientTag));
    if (!ctEqual(want, sf.subarray(8, 40))) throw new EncryptionError('marmot: wrong key: the server does not know the passphrase');
    const send = await Direction.create(hk, hsalt, 'marmot v2 c2s', th, mode, size);
    const recv = await Direction.create(hk, hsalt, 'marmot v2 s2c', th, mode, size);
    return { send, recv, mode: MODE_NAMES[mode], keySize: SIZE_BITS[size] };
  };
  return { hello: ch, finish };
}

// ---------------------------------------------------------------- transports

// A transport carries whole messages (string or Uint8Array) and reports
// them through handlers set before open: onmessage(data), onclose(code, reason).

function wsTransport(url, protocols) {
  const t = { name: 'websocket', onmessage: null, onclose: null, protocol: '' };
  let ws = null;
  t.open = (timeoutMs) => new Promise((resolve, reject) => {
    try {
      ws = new WebSocket(url, protocols);
    } catch (err) {
      reject(new ClosedError(`marmot: cannot open ${url}: ${err.message}`));
      return;
    }
    ws.binaryType = 'arraybuffer';
    let opened = false;
    const timer = setTimeout(() => {
      if (!opened) {
        ws.close();
        reject(new TimeoutError(`marmot: connecting to ${url} timed out`));
      }
    }, timeoutMs);
    ws.onopen = () => {
      opened = true;
      clearTimeout(timer);
      t.protocol = ws.protocol;
      resolve(t);
    };
    ws.onmessage = (ev) => t.onmessage && t.onmessage(typeof ev.data === 'string' ? ev.data : new Uint8Array(ev.data));
    ws.onclose = (ev) => {
      clearTimeout(timer);
      if (!opened) {
        reject(new ClosedError(`marmot: WebSocket to ${url} refused or failed (${ev.code})`, ev.code, ev.reason));
        return;
      }
      t.onclose && t.onclose(ev.code, ev.reason);
    };
  });
  t.send = (d) => ws.send(d);
  t.close = (code, reason) => ws && ws.close(code, reason);
  t.buffered = () => (ws ? ws.bufferedAmount : 0);
  return t;
}

// httpTransport: the HTTP fallback (docs/HTTP.md): a session opened by a
// POST on the endpoint, records up by POST (one send in flight, resent with
// the same seq when its answer is lost), records down by long-poll GET
// acknowledging what was processed (a lost poll is repeated: nothing lost).
function httpTransport(url, protocols, encryption, token) {
  const t = { name: 'http', onmessage: null, onclose: null, protocol: '' };
  const base = new URL(url.replace(/^ws/, 'http'));
  base.search = '';
  let sid = '', closed = false, ack = 0, nextSeq = 1, idleMs = 30000, maxBody = 1 << 20;
  let queue = [], sending = false, poller = null, closeSent = false;
  const at = (q) => {
    const u = new URL(base);
    for (const [k, v] of Object.entries(q)) u.searchParams.set(k, v);
    return u.toString();
  };
  const end = (code, reason) => {
    if (closed) return;
    closed = true;
    if (poller) poller.abort();
    t.onclose && t.onclose(code, reason);
  };
  const record = (type, payload) => {
    const r = new Uint8Array(5 + payload.length);
    r[0] = type;
    new DataView(r.buffer).setUint32(1, payload.length);
    r.set(payload, 5);
    return r;
  };
  const pause = () => new Promise((r) => setTimeout(r, 250));
  t.open = async (timeoutMs) => {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    const q = { transport: 'http', subprotocol: protocols.join(',') };
    if (encryption) { q.marmot_encryption = encryption; q.marmot_handshake = '2'; }
    if (token) q.token = token;
    let res;
    try {
      res = await fetch(at(q), { method: 'POST', signal: ctl.signal, cache: 'no-store' });
      if (!res.ok) {
        const text = (await res.text().catch(() => '')).trim();
        // The server encrypts otherwise (PROTOCOL.md section 5): no retry helps.
        if (res.status === 400 && res.headers.get('X-Marmot-Encryption')) throw new EncryptionError(text || 'marmot: encryption mismatch');
        throw new ClosedError(`marmot: HTTP open of ${base} refused: ${res.status} ${text}`, res.status === 404 ? 4404 : 1006, text);
      }
      const o = await res.json();
      sid = o.session;
      t.protocol = o.subprotocol || '';
      idleMs = o.idleTimeout || idleMs;
      maxBody = o.maxBody || maxBody;
    } catch (err) {
      if (err instanceof MarmotError) throw err;
      throw ctl.signal.aborted ? new TimeoutError(`marmot: HTTP open of ${base} timed out`) : new ClosedError(`marmot: HTTP open of ${base} failed: ${err.message}`);
    } finally {
      clearTimeout(timer);
    }
    poll();
    return t;
  };
  // poll keeps one GET in flight; it retries a failed one with the same ack
  // until requests have failed for idleTimeout in a row.
  const poll = async () => {
    let failingSince = 0;
    while (!closed) {
      poller = new AbortController();
      let buf, first;
      try {
        const res = await fetch(at({ session: sid, ack: String(ack) }), { signal: poller.signal, cache: 'no-store' });
        if (res.status === 404 || res.status === 409) {
          end(closeSent ? 1000 : 1006, `session ended (${res.status})`);
          return;
        }
        if (!res.ok) throw new Error(`poll answered ${res.status}`);
        first = Number(res.headers.get('X-Marmot-Seq'));
        buf = new Uint8Array(await res.arrayBuffer());
        failingSince = 0;
      } catch (err) {
        if (closed) return;
        failingSince = failingSince || Date.now();
        if (Date.now() - failingSince > idleMs) {
          end(1006, 'polls failed');
          return;
        }
        await pause();
        continue;
      }
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      for (let off = 0, n = first; off < buf.length; n++) {
        if (off + 5 > buf.length) {
          end(1002, 'malformed poll body');
          return;
        }
        const type = buf[off], len = dv.getUint32(off + 1);
        if (off + 5 + len > buf.length) {
          end(1002, 'malformed poll body');
          return;
        }
        const payload = buf.subarray(off + 5, off + 5 + len);
        off += 5 + len;
        if (n <= ack) continue; // a repeated poll: processed already
        ack = n;
        if (type === 8) {
          const code = len >= 2 ? dv.getUint16(payload.byteOffset - buf.byteOffset) : 1005;
          const reason = len > 2 ? looseDec.decode(payload.subarray(2)) : '';
          if (!closeSent) sendRecords([record(8, payload.slice(0, 2))]);
          // Acknowledge the close; the server then forgets the session.
          fetch(at({ session: sid, ack: String(ack) }), { cache: 'no-store' }).catch(() => {});
          end(code, reason);
          return;
        }
        if (type === 1) t.onmessage && t.onmessage(looseDec.decode(payload));
        else if (type === 2) t.onmessage && t.onmessage(payload.slice());
      }
    }
  };
  // flush sends the queued records, one POST at a time, in order.
  const flush = async () => {
    if (sending) return;
    sending = true;
    let failingSince = 0;
    while (queue.length && !(closed && !closeSent)) {
      const batch = [];
      let size = 0;
      while (queue.length && (batch.length === 0 || size + queue[0].length <= maxBody)) {
        size += queue[0].length;
        batch.push(queue.shift());
      }
      const seq = nextSeq;
      nextSeq += batch.length;
      const body = concat(...batch);
      for (;;) {
        try {
          const res = await fetch(at({ session: sid, seq: String(seq) }), {
            method: 'POST', body, cache: 'no-store', headers: { 'Content-Type': 'application/octet-stream' },
          });
          if (res.ok) break;
          if (res.status === 404) {
            end(closeSent ? 1000 : 1006, 'session ended');
            sending = false;
            return;
          }
          if (res.status !== 409 && res.status < 500) {
            end(res.status === 413 ? 1009 : 1002, `send refused: ${res.status}`);
            sending = false;
            return;
          }
          throw new Error(`send answered ${res.status}`);
        } catch (err) {
          if (closed) break;
          failingSince = failingSince || Date.now();
          if (Date.now() - failingSince > idleMs) {
            end(1006, 'sends failed');
            sending = false;
            return;
          }
          await pause();
        }
      }
      failingSince = 0;
    }
    sending = false;
  };
  const sendRecords = (recs) => {
    queue.push(...recs);
    flush();
  };
  t.send = (d) => {
    if (closed) return;
    sendRecords([typeof d === 'string' ? record(1, enc.encode(d)) : record(2, d)]);
  };
  t.close = (code, reason) => {
    if (closed || closeSent) return;
    closeSent = true;
    const r = enc.encode(reason || '').subarray(0, 123);
    const p = new Uint8Array(2 + r.length);
    new DataView(p.buffer).setUint16(0, code || 1000);
    p.set(r, 2);
    sendRecords([record(8, p)]);
    // The server answers with its close record in a poll; bound the wait.
    setTimeout(() => end(code || 1000, reason || ''), 5000);
  };
  t.buffered = () => queue.reduce((n, r) => n + r.length, 0);
  return t;
}

// ---------------------------------------------------------------- client

const DEFAULTS = {
  url: '',
  transport: 'auto', // 'auto' | 'websocket' | 'http'
  connectionTimeout: 30000,
  requestTimeout: 30000,
  autoReconnect: false,
  reconnectStrategy: 'fixed', // 'fixed' | 'exponential'
  reconnectInterval: 5000,
  maxReconnectInterval: 60000,
  reconnectJitter: 0.1,
  maxReconnectAttempts: 0,
  healthyAfter: 0,
  retryFirstConnect: false,
  encryption: null, // { key, mode: 'gcm', keySize: 256, acceptModes: [], acceptKeySizes: [] }
  // token: a string, or a function (async or not) returning one, asked
  // again before every connection attempt: a refreshed token after the
  // server closed with 4001 (expired). Sent as the token query parameter
  // (jwtauth's default; browsers cannot set headers on a WebSocket).
  token: null,
};

/**
 * Client is one connection to a marmot server, reconnecting by itself when
 * autoReconnect is set. Events (on): statechange, connect, disconnect,
 * message, data, datasent, error, reconnecting, reconnectfailed, recover,
 * presence.
 */
export class Client {
  constructor(config) {
    if (typeof config === 'string') config = { url: config };
    this.config = Object.assign({}, DEFAULTS, config || {});
    const c = this.config;
    if (!c.url) {
      const loc = globalThis.location;
      c.url = loc ? `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/websocket` : '';
    }
    if (!['auto', 'websocket', 'http'].includes(c.transport)) throw new MarmotError(`marmot: unknown transport ${c.transport}`);
    if (c.encryption) {
      const e = c.encryption = Object.assign({ mode: 'gcm', keySize: 256, acceptModes: [], acceptKeySizes: [] }, c.encryption);
      if (!e.key) throw new EncryptionError('marmot: encryption needs a key');
      for (const m of [e.mode, ...e.acceptModes]) {
        if (!browserModes.includes(m)) throw new EncryptionError(`marmot: mode ${m} is not available in a browser (WebCrypto has ${browserModes.join(', ')})`);
      }
      for (const k of [e.keySize, ...e.acceptKeySizes]) {
        if (!browserKeySizes.includes(k)) throw new EncryptionError(`marmot: AES-${k} is not available in a browser (WebCrypto has ${browserKeySizes.join(', ')})`);
      }
    }
    this._state = State.Disconnected;
    this._listeners = new Map();
    this._pending = new Map();
    this._nextId = 1;
    this._rooms = new Map(); // name → { epoch, offset }
    this._t = null;
    this._session = null;
    this._sendChain = Promise.resolve();
    this._recvChain = Promise.resolve();
    this._retryTimer = null;
    this._attempt = 0;
    this._healthyTimer = null;
    this._episode = 0;
    this._stats = { bytesReceived: 0, bytesSent: 0, messagesReceived: 0, messagesSent: 0, reconnects: 0 };
    this.transport = '';
    this.encryptionMode = '';
  }

  /** The current state (one of State). */
  get state() {
    return this._state;
  }
  /** The state for humans ("Connected to server"...). */
  get stateDescription() {
    return describeState(this._state);
  }
  /** True while connected. */
  get connected() {
    return this._state === State.Connected;
  }
  /** True while waiting to reconnect. */
  get reconnecting() {
    return this._state === State.Reconnecting;
  }
  /** Traffic counters: bytes and messages each way, reconnects. */
  get stats() {
    return Object.assign({}, this._stats);
  }
  /** The rooms joined with join and not left. */
  get rooms() {
    return [...this._rooms.keys()];
  }

  /** on registers fn for event; it returns a function that removes it. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        if (event !== 'error') this._emit('error', err);
        else setTimeout(() => { throw err; });
      }
    }
  }

  _setState(s) {
    const old = this._state;
    if (old === s) return;
    this._state = s;
    this._emit('statechange', old, s);
  }

  /**
   * connect opens the connection; it resolves once connected (rooms
   * re-joined) and rejects when the first attempt fails (unless
   * retryFirstConnect).
   */
  async connect() {
    if (this._state === State.Connected) return;
    if (this._connecting) return this._connecting;
    this._episode++;
    const episode = this._episode;
    this._userClosed = false;
    this._setState(State.Connecting);
    this._connecting = (async () => {
      for (;;) {
        try {
          await this._attemptOnce(episode);
          this._attempt = 0;
          return;
        } catch (err) {
          if (episode !== this._episode) throw new ClosedError('marmot: disconnected while connecting', 1000);
          if (!this.config.retryFirstConnect || err instanceof EncryptionError) {
            this._setState(err instanceof EncryptionError ? State.Error : State.Disconnected);
            throw err;
          }
          this._attempt++;
          const m = this.config.maxReconnectAttempts;
          if (m > 0 && this._attempt >= m) {
            this._setState(State.Disconnected);
            throw err;
          }
          const delay = this._delay(this._attempt);
          this._emit('reconnecting', this._attempt, delay);
          await new Promise((r) => { this._retryTimer = setTimeout(r, delay); });
          if (episode !== this._episode) throw new ClosedError('marmot: disconnected while connecting', 1000);
        }
      }
    })();
    try {
      await this._connecting;
    } finally {
      this._connecting = null;
    }
  }

  // _open opens one transport: WebSocket, or HTTP when WebSocket is missing
  // or (transport 'auto') its upgrade fails.
  async _open() {
    const c = this.config;
    let url = c.url;
    const protocols = c.encryption ? ['marmot.v1'] : ['marmot.json.v1'];
    const encryption = c.encryption ? 'secure' : '';
    const token = typeof c.token === 'function' ? await c.token() : c.token;
    if (token != null && typeof token !== 'string') throw new MarmotError('marmot: token must be a string');
    const params = new URLSearchParams();
    if (encryption) { params.set('marmot_encryption', encryption); params.set('marmot_handshake', '2'); }
    if (token) params.set('token', token);
    const wsURL = params.size ? url + (url.includes('?') ? '&' : '?') + params.toString() : url;
    const hasWS = typeof globalThis.WebSocket === 'function';
    const http = () => httpTransport(url, protocols, encryption, token).open(c.connectionTimeout);
    if (c.transport === 'http' || (c.transport === 'auto' && !hasWS)) return http();
    if (c.transport === 'websocket') {
      if (!hasWS) throw new ClosedError('marmot: this page has no WebSocket (use transport "auto" or "http")');
      return wsTransport(wsURL, protocols).open(c.connectionTimeout);
    }
    try {
      return await wsTransport(wsURL, protocols).open(c.connectionTimeout);
    } catch (err) {
      try {
        return await http();
      } catch (err2) {
        // An encryption mismatch, hidden from a browser's WebSocket, shows
        // in the HTTP open's answer; otherwise say what both attempts met.
        if (err2 instanceof EncryptionError) throw err2;
        throw new ClosedError(`${err.message}; HTTP fallback: ${err2.message}`, err.code, err.reason);
      }
    }
  }

  async _attemptOnce(episode) {
    const c = this.config;
    const t = await this._open();
    if (episode !== this._episode) {
      t.close(1000, '');
      throw new ClosedError('marmot: disconnected while connecting', 1000);
    }
    this._session = null;
    this._sendChain = Promise.resolve();
    this._recvChain = Promise.resolve();
    if (c.encryption) {
      try {
        this._session = await this._handshake(t);
      } catch (err) {
        t.close(err instanceof EncryptionError ? 4501 : 1000, err instanceof EncryptionError ? err.closeReason : 'handshake failed');
        throw err;
      }
      this.encryptionMode = `${this._session.mode}/${this._session.keySize}`;
    }
    this.transport = t.name;
    t.onmessage = (d) => this._onWire(t, d);
    // Until the rooms are joined again a close only fails this attempt.
    t.onclose = (code, reason) => {
      t.dead = true;
      this._rejectPending(new ClosedError(`marmot: connection closed (${code}${reason ? ' ' + reason : ''})`, code, reason));
    };
    // Rejoin rooms before announcing the connection, as the Go client does.
    for (const [room, st] of [...this._rooms]) {
      try {
        const res = await this._joinRequest(room, st.epoch, st.epoch ? st.offset : 0, t);
        if (res && res.recover) this._emit('recover', room, !!res.recover.recovered, res.recover.missed, res.recover.reason || '');
        else this._emit('recover', room, false, -1, 'no history');
      } catch (err) {
        if (err instanceof RemoteError) {
          this._rooms.delete(room);
          this._emit('recover', room, false, -1, `join refused: ${err.remoteMessage}`);
        } else {
          t.dead = true;
          t.close(1000, '');
          throw err;
        }
      }
    }
    if (t.dead) throw new ClosedError('marmot: connection closed while joining rooms');
    this._t = t;
    t.onclose = (code, reason) => this._onClose(t, code, reason);
    this._setState(State.Connected);
    clearTimeout(this._healthyTimer);
    const healthy = c.healthyAfter || Math.max(5000, c.reconnectInterval);
    this._healthyTimer = setTimeout(() => { this._attempt = 0; }, healthy);
    this._emit('connect');
  }

  // _handshake runs the secure profile's three messages on a fresh transport.
  _handshake(t) {
    return new Promise((resolve, reject) => {
      let step = 0, finish = null;
      const timer = setTimeout(() => reject(new TimeoutError('marmot: encryption handshake timed out')), this.config.connectionTimeout);
      t.onclose = (code, reason) => {
        clearTimeout(timer);
        reject(code === 4501 ? new EncryptionError(`marmot: encryption handshake failed: ${reason}`) : new ClosedError(`marmot: closed during the handshake (${code} ${reason})`, code, reason));
      };
      t.onmessage = async (d) => {
        try {
          if (typeof d === 'string') throw new EncryptionError('marmot: handshake failed: text message');
          if (step++ === 0) {
            const hs = await clientHandshake(this.config.encryption, d);
            finish = hs.finish;
            t.send(hs.hello);
          } else {
            const s = await finish(d);
            clearTimeout(timer);
            resolve(s);
          }
        } catch (err) {
          clearTimeout(timer);
          reject(err);
        }
      };
    });
  }

  _delay(attempt) {
    const c = this.config;
    let d = c.reconnectInterval;
    if (c.reconnectStrategy === 'exponential') d = Math.min(c.maxReconnectInterval, d * 2 ** Math.max(0, attempt - 1));
    const j = c.reconnectJitter || 0;
    return Math.max(0, Math.round(d * (1 + j * (2 * Math.random() - 1))));
  }

  _onClose(t, code, reason) {
    if (t !== this._t) return;
    this._t = null;
    t.dead = true;
    clearTimeout(this._healthyTimer);
    this._rejectPending(new ClosedError(`marmot: connection closed (${code}${reason ? ' ' + reason : ''})`, code, reason));
    const user = this._userClosed;
    this._emit('disconnect', { code, reason });
    if (user || !this.config.autoReconnect || noReconnect(code)) {
      this._setState(State.Disconnected);
      return;
    }
    this._stats.reconnects++;
    this._setState(State.Reconnecting);
    this._scheduleRetry(this._episode);
  }

  _rejectPending(err) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  _scheduleRetry(episode) {
    this._attempt++;
    const m = this.config.maxReconnectAttempts;
    if (m > 0 && this._attempt > m) {
      this._setState(State.Disconnected);
      return;
    }
    const attempt = this._attempt, delay = this._delay(attempt);
    this._emit('reconnecting', attempt, delay);
    this._retryTimer = setTimeout(async () => {
      if (episode !== this._episode) return;
      try {
        await this._attemptOnce(episode);
      } catch (err) {
        if (episode !== this._episode) return;
        this._emit('reconnectfailed', attempt, err);
        if (err instanceof EncryptionError) {
          this._setState(State.Error);
          return;
        }
        this._setState(State.Reconnecting);
        this._scheduleRetry(episode);
      }
    }, delay);
  }

  /** disconnect closes the connection (1000) and stops reconnecting. */
  async disconnect() {
    this._episode++;
    this._userClosed = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._healthyTimer);
    const t = this._t;
    if (!t) {
      this._setState(State.Disconnected);
      return;
    }
    this._setState(State.Disconnecting);
    const closed = new Promise((r) => {
      const off = this.on('statechange', (_, s) => {
        if (s === State.Disconnected) {
          off();
          r();
        }
      });
    });
    await this._sendChain.catch(() => {});
    t.close(1000, '');
    const timer = setTimeout(() => this._onClose(t, 1000, 'closed locally'), 5000);
    await closed;
    clearTimeout(timer);
  }

  // _write encodes one envelope and sends it, in order, sealed when encrypted.
  _write(env) {
    const t = this._t;
    if (!t) throw new ClosedError('marmot: not connected');
    this._writeOn(t, env);
  }

  _writeOn(t, env) {
    this._stats.messagesSent++;
    if (!this._session) {
      const s = encodeJSON(env);
      this._stats.bytesSent += s.length;
      t.send(s);
      this._emit('datasent', s);
      return;
    }
    const plain = encodeBinary(env);
    const sess = this._session;
    this._sendChain = this._sendChain.then(async () => {
      const frame = await sess.send.seal(plain);
      this._stats.bytesSent += frame.length;
      t.send(frame);
      this._emit('datasent', frame);
    }).catch((err) => this._fail(t, err));
  }

  // _fail ends a connection whose peer broke the protocol: a client does
  // not come back after 1002, nor after 4002 (browsers cannot send 1002).
  _fail(t, err) {
    this._emit('error', err);
    if (t.dead) return;
    t.close(err instanceof EncryptionError ? 4002 : 1000, 'protocol error');
    if (t === this._t) this._onClose(t, 1002, err.message);
    else t.onclose(1002, err.message);
  }

  _onWire(t, d) {
    if (t.dead) return;
    this._stats.messagesReceived++;
    this._stats.bytesReceived += typeof d === 'string' ? d.length : d.length;
    this._emit('data', d);
    if (!this._session) {
      let env;
      try {
        if (typeof d !== 'string') throw new MarmotError('marmot: binary message on marmot.json.v1');
        env = decodeJSON(d);
      } catch (err) {
        this._fail(t, err);
        return;
      }
      this._dispatch(env);
      return;
    }
    const sess = this._session;
    this._recvChain = this._recvChain.then(async () => {
      if (typeof d === 'string') throw new EncryptionError('marmot: text message on an encrypted connection');
      const env = decodeBinary(await sess.recv.open(d));
      if (!t.dead) this._dispatch(env);
    }).catch((err) => this._fail(t, err));
  }

  _dispatch(env) {
    if (env.kind === 'reply' || env.kind === 'error') {
      const p = this._pending.get(env.id);
      if (!p) return;
      this._pending.delete(env.id);
      clearTimeout(p.timer);
      if (env.kind === 'reply') p.resolve(new Message(env, this));
      else p.reject(new RemoteError(env.code, new Message(env, this).text));
      return;
    }
    if (env.room) {
      if (env.kind === 'command' && env.name === 'marmot.presence' && !env.offset) {
        try {
          const ev = JSON.parse(new Message(env, this).text);
          this._emit('presence', env.room, ev.client, ev.event === 'join');
        } catch (err) {
          this._emit('error', err);
        }
        return;
      }
      const st = this._rooms.get(env.room);
      if (st && env.offset > st.offset) st.offset = env.offset;
    }
    this._emit('message', new Message(env, this));
  }

  /** send sends data (string or bytes) as a data message. */
  send(data) {
    this._write({ kind: 'data', payload: data });
  }

  /** sendCommand sends a named command. */
  sendCommand(name, payload) {
    if (!name) throw new MarmotError('marmot: a command needs a name');
    this._write({ kind: 'command', name, payload });
  }

  /**
   * request sends a named request and resolves with the reply (a Message);
   * it rejects with RemoteError on an error reply, TimeoutError after
   * timeout ms (default requestTimeout), ClosedError when the connection ends.
   */
  request(name, payload, options) {
    return this._request({ kind: 'request', name, payload }, options, this._t);
  }

  _request(env, options, t) {
    if (!t) return Promise.reject(new ClosedError('marmot: not connected'));
    if (!env.name) return Promise.reject(new MarmotError('marmot: a request needs a name'));
    const timeout = (options && options.timeout) || this.config.requestTimeout;
    const id = this._nextId++;
    if (this._nextId > Number.MAX_SAFE_INTEGER) this._nextId = 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new TimeoutError(`marmot: request ${env.name} timed out after ${timeout} ms`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer });
      try {
        this._writeOn(t, Object.assign({ id }, env));
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(err);
      }
    });
  }

  async _joinRequest(room, epoch, offset, t) {
    const r = await this._request({ kind: 'request', name: 'marmot.join', room, epoch, offset }, null, t || this._t);
    const res = r.text ? JSON.parse(r.text) : {};
    const st = this._rooms.get(room) || { epoch: '', offset: 0 };
    st.epoch = res.epoch || '';
    if (!res.recover || !res.recover.recovered) st.offset = res.offset || 0;
    else st.offset = Math.max(st.offset, res.offset || 0);
    this._rooms.set(room, st);
    return res;
  }

  /** join makes this connection a member of room; it resolves with the join result ({epoch, offset}). */
  async join(room) {
    if (!room) throw new MarmotError('marmot: join needs a room');
    return this._joinRequest(room, '', 0);
  }

  /** leave ends the membership of room. */
  async leave(room) {
    this._rooms.delete(room);
    await this._request({ kind: 'request', name: 'marmot.leave', room }, null, this._t);
  }

  /** publish sends data to every member of room; it resolves once the room accepted it. */
  async publish(room, data) {
    if (!room) throw new MarmotError('marmot: publish needs a room');
    await this._request({ kind: 'request', name: 'marmot.publish', room, payload: data }, null, this._t);
  }

  /** presence resolves with the member IDs of a room that has presence. */
  async presence(room) {
    const r = await this._request({ kind: 'request', name: 'marmot.presence', room }, null, this._t);
    return r.text ? JSON.parse(r.text).members || [] : [];
  }
}

/** connect makes a Client for config and connects it. */
export async function connect(config) {
  const c = new Client(config);
  await c.connect();
  return c;
}

export const _internal = { encodeJSON, decodeJSON, encodeBinary, decodeBinary };
