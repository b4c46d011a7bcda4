// Independent reference for the secure profile's version-2 handshake
// (docs/ENCRYPTION.md sections 2.3-2.4), written with WebCrypto alone, as a
// browser client would. It prints the known-answer vectors that
// crypto/fsecrecy_test.go (TestHandshakeV2KnownAnswer) checks the Go code
// against. Run: node crypto/testdata/handshake_v2_kat.mjs (Node >= 20); it
// runs unchanged in a browser module (it prints to the console).
const subtle = globalThis.crypto.subtle;
const enc = new TextEncoder();
const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};
const seq = (from, n) => Uint8Array.from({ length: n }, (_, i) => from + i);
const u32le = (v) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); return b; };

// Inputs (the Go test uses the same). The entropy each side draws, in
// order: its 32-byte nonce, then its 32-byte X25519 private key.
const passphrase = enc.encode('marmot kat passphrase');
const salt = seq(0, 16);
const iterations = 1000;
const serverNonce = seq(0x00, 32), serverPriv = seq(0x20, 32);
const clientNonce = seq(0x40, 32), clientPriv = seq(0x60, 32);
const MODE_GCM = 5, KEY256 = 2;

// X25519 private keys import as PKCS#8 (WebCrypto has no raw private import).
const pkcs8 = (raw) => cat(Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]), raw);
async function x25519(priv) {
  const key = await subtle.importKey('pkcs8', pkcs8(priv), { name: 'X25519' }, true, ['deriveBits']);
  const jwk = await subtle.exportKey('jwk', key);
  const b64 = jwk.x.replace(/-/g, '+').replace(/_/g, '/');
  const pub = Uint8Array.from(atob(b64 + '='.repeat((4 - b64.length % 4) % 4)), (c) => c.charCodeAt(0));
  return { key, pub };
}
async function dh(priv, peerPub) {
  const pub = await subtle.importKey('raw', peerPub, { name: 'X25519' }, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, priv.key, 256));
}
async function hmac(key, ...data) {
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, cat(...data)));
}
// HKDF(salt, IKM, info, L) = HKDF-Expand(HKDF-Extract(salt, IKM), info, L):
// WebCrypto's HKDF does both steps, which is all a client needs.
async function hkdf(ikm, hkdfSalt, info, bytes) {
  const k = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: hkdfSalt, info }, k, bytes * 8));
}
const sha256 = async (b) => new Uint8Array(await subtle.digest('SHA-256', b));

const pbkdf2Key = await subtle.importKey('raw', passphrase, 'PBKDF2', false, ['deriveBits']);
const master = new Uint8Array(await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, pbkdf2Key, 256));

const server = await x25519(serverPriv);
const client = await x25519(clientPriv);

// ServerHello, version 2: 88 fixed bytes, then the salt.
const serverHello = cat(enc.encode('MRSH'), Uint8Array.from([2, MODE_GCM, KEY256, 0 /* PBKDF2 */, 0, 0 /* modes */, 0 /* sizes */, salt.length]),
  u32le(iterations), u32le(0), Uint8Array.from([0, 0, 0, 0]), serverNonce, server.pub, salt);

// ClientHello, version 2: 104 bytes, the tag last.
const clientHelloNoTag = cat(enc.encode('MRCH'), Uint8Array.from([2, MODE_GCM, KEY256, 0]), clientNonce, client.pub);

const shared = await dh(client, server.pub);
const sharedServer = await dh(server, client.pub);
if (hex(shared) !== hex(sharedServer)) throw new Error('X25519 disagrees');

const ikm = cat(master, shared);
const nonces = cat(clientNonce, serverNonce);
const th = await sha256(cat(serverHello, clientHelloNoTag));
const label = (s) => enc.encode('marmot v2 ' + s);
const kc = await hkdf(ikm, nonces, cat(label('confirm c2s'), th), 32);
const clientTag = await hmac(kc, th);
const ks = await hkdf(ikm, nonces, cat(label('confirm s2c'), th), 32);
const serverTag = await hmac(ks, th, clientTag);
const clientHello = cat(clientHelloNoTag, clientTag);
const serverFinished = cat(enc.encode('MRSF'), Uint8Array.from([2, 0, 0, 0]), serverTag);

// First frame each way, AES-256-GCM: header ‖ seq ‖ length ‖ ciphertext ‖ tag.
async function seal(dir, seqNo, plaintext) {
  const okm = await hkdf(ikm, nonces, cat(label(dir), Uint8Array.from([MODE_GCM, KEY256]), th), 32 + 32 + 16);
  const key = await subtle.importKey('raw', okm.slice(0, 32), 'AES-GCM', false, ['encrypt']);
  const iv = okm.slice(64, 76);
  const dv = new DataView(iv.buffer, iv.byteOffset);
  dv.setBigUint64(4, dv.getBigUint64(4) ^ BigInt(seqNo)); // IV xor (0^4 ‖ seq big-endian)
  const head = cat(enc.encode('MROM'), u32le(MODE_GCM), u32le(KEY256), Uint8Array.from([1, 0, 0, 0]));
  const seqLE = new Uint8Array(8); new DataView(seqLE.buffer).setBigUint64(0, BigInt(seqNo), true);
  const aad = cat(head, seqLE, u32le(plaintext.length));
  const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, key, plaintext));
  return cat(aad, ct); // WebCrypto appends the 16-byte tag
}

console.log(JSON.stringify({
  serverHello: hex(serverHello),
  clientHello: hex(clientHello),
  serverFinished: hex(serverFinished),
  c2s0: hex(await seal('c2s', 0, enc.encode('hello from the client'))),
  s2c0: hex(await seal('s2c', 0, enc.encode('hello from the server'))),
}, null, 2));
