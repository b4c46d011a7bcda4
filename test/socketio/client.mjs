// Socket.IO clients forced to long-polling, in a closed loop like the load
// tool's echo: each sends a message (a Buffer of --size bytes), waits for
// its echo, checks it byte for byte. Prints one JSON result line.
//
//   node client.mjs --url http://127.0.0.1:PORT --clients 100 --size 64 --duration 5
import http from "node:http";
import { io } from "socket.io-client";

// One keep-alive agent for every client: socket.io-client in Node opens a
// new TCP connection for every poll and send by default (agent: false),
// which costs it 2-3x its throughput here; marmot's load client reuses its
// connections, so the baseline does too.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const url = args.url;
const clients = Number(args.clients ?? 100);
const size = Number(args.size ?? 64);
const duration = Number(args.duration ?? 5) * 1000;
const maxDuration = Number(args["max-duration"] ?? 180) * 1000;

function fill(buf, client, seq) {
  buf.writeBigUInt64LE(BigInt(seq), 0);
  buf.writeBigUInt64LE(BigInt(client), 8);
  for (let i = 16; i < buf.length; i++) buf[i] = (seq * 7 + client * 13 + i) & 0xff;
}

const errors = [];
const lat = [];
let msgs = 0;
let mismatched = 0;

function connect() {
  return new Promise((resolve, reject) => {
    const s = io(url, { transports: ["polling"], agent, forceNew: true, reconnection: false, timeout: 30000 });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

const sockets = [];
for (let i = 0; i < clients; i += 64) {
  const batch = [];
  for (let j = i; j < Math.min(i + 64, clients); j++) batch.push(connect());
  sockets.push(...(await Promise.all(batch)));
}

const start = performance.now();
const deadline = start + duration;
const hardStop = start + maxDuration;
await Promise.all(
  sockets.map(
    (s, client) =>
      new Promise((resolve) => {
        const buf = Buffer.alloc(size);
        let seq = 0;
        let t0 = 0;
        const send = () => {
          const now = performance.now();
          if (now > deadline || now > hardStop) return resolve();
          fill(buf, client, seq);
          t0 = performance.now();
          s.emit("m", buf);
        };
        s.on("m", (data) => {
          lat.push((performance.now() - t0) * 1000);
          msgs++;
          if (!Buffer.from(data).equals(buf)) {
            mismatched++;
            errors.push(`client ${client}: echo #${seq} differs`);
            return resolve();
          }
          seq++;
          send();
        });
        s.on("disconnect", (reason) => {
          if (performance.now() <= deadline) errors.push(`client ${client}: disconnected: ${reason}`);
          resolve();
        });
        send();
      }),
  ),
);
const seconds = (performance.now() - start) / 1000;
for (const s of sockets) s.close();

lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] : 0);
console.log(
  JSON.stringify({
    msgs,
    seconds,
    msgsPerSec: msgs / seconds,
    p50: q(50),
    p90: q(90),
    p99: q(99),
    max: lat.length ? lat[lat.length - 1] : 0,
    mismatched,
    errors: errors.slice(0, 10),
  }),
);
process.exit(0);
