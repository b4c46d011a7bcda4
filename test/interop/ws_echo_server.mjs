// Raw-mode echo server for test/interop_node_test.go.
//
// Usage: node ws_echo_server.mjs [--deflate]
//
// Listens on 127.0.0.1 on a free port and prints one JSON line
// {"port":N}; echoes every message with the same type; prints
// {"closed":CODE,"reason":"...","protocol":"...","extensions":"..."} when a
// client closes. With --deflate it accepts permessage-deflate and compresses
// every message (threshold 0).
// Exits when stdin ends, so the Go test controls its lifetime and an
// abandoned server cannot outlive the test process.
import { WebSocketServer } from 'ws';

const deflate = process.argv.includes('--deflate');
const wss = new WebSocketServer({
  host: '127.0.0.1', port: 0, maxPayload: 4 << 20,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
});

wss.on('listening', () => console.log(JSON.stringify({ port: wss.address().port })));

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code, reason) => {
    console.log(JSON.stringify({ closed: code, reason: reason.toString(), protocol: ws.protocol, extensions: ws.extensions }));
  });
});

wss.on('error', (err) => {
  console.error(`ws_echo_server: ${err.message}`);
  process.exit(1);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
