// Raw-mode interop client for test/interop_node_test.go.
//
// Usage: node ws_client.mjs URL N
//
// Sends N text and N binary messages (interleaved, pipelined), expects each
// echoed back in order with the same type and bytes, then closes with 1000.
// It offers permessage-deflate (ws's default). On success it prints one JSON
// line with what it sent, the extensions negotiated and the close code it
// got back, and exits 0; on any mismatch it prints the reason to stderr and
// exits 1.
import WebSocket from 'ws';

const [url, nArg] = process.argv.slice(2);
const n = Number(nArg);
if (!url || !Number.isInteger(n) || n < 1) {
  console.error('usage: node ws_client.mjs URL N');
  process.exit(2);
}

function fail(msg) {
  console.error(`ws_client: ${msg}`);
  process.exit(1);
}

// Sizes vary so that frames of 7-bit, 16-bit and (for large i) 64-bit
// lengths all occur; text mixes ASCII and multi-byte UTF-8.
function textPayload(i) {
  return Buffer.from(`text ${i} ünïcödé ✓ ` + 'x'.repeat((i * 997) % 70000));
}

// Binary frames are not valid UTF-8, except the first: a binary frame of
// plain ASCII must still come back binary, not be re-typed as text.
function binaryPayload(i) {
  if (i === 0) return Buffer.from('binary frame that happens to be ASCII');
  const len = 1 + ((i * 1531) % 70000);
  const b = Buffer.alloc(len);
  for (let j = 0; j < len; j++) b[j] = (i * 31 + j * 7) & 0xff;
  b[0] = 0xff; // never valid UTF-8
  return b;
}

const expected = [];
for (let i = 0; i < n; i++) {
  expected.push({ binary: false, data: textPayload(i) });
  expected.push({ binary: true, data: binaryPayload(i) });
}
const bytes = expected.reduce((sum, e) => sum + e.data.length, 0);

const timer = setTimeout(() => fail('timed out'), 30000);
const ws = new WebSocket(url); // no subprotocol: raw mode
let received = 0;

ws.on('open', () => {
  if (ws.protocol !== '') fail(`negotiated subprotocol ${JSON.stringify(ws.protocol)}, want none`);
  for (const e of expected) ws.send(e.data, { binary: e.binary });
});

ws.on('message', (data, isBinary) => {
  const want = expected[received];
  if (!want) fail(`unexpected message #${received + 1}`);
  if (isBinary !== want.binary) fail(`message #${received + 1}: binary=${isBinary}, want ${want.binary}`);
  if (!Buffer.from(data).equals(want.data)) fail(`message #${received + 1}: payload differs (${data.length} bytes, want ${want.data.length})`);
  received++;
  if (received === expected.length) ws.close(1000, 'done');
});

ws.on('error', (err) => fail(`socket error: ${err.message}`));

ws.on('close', (code, reason) => {
  clearTimeout(timer);
  if (received !== expected.length) fail(`closed (${code}) after ${received} of ${expected.length} echoes`);
  console.log(JSON.stringify({ messages: expected.length, bytes, extensions: ws.extensions, closeCode: code, closeReason: reason.toString() }));
  process.exit(code === 1000 ? 0 : 1);
});
