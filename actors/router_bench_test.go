package actors

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/protocol"
)

// Micro-benchmarks of the router and the inbound path, without sockets: they
// measure marmot's own work per operation and its allocations. The socket
// side is measured end to end by test/ and test/load.

// routerHub is a hub with n registered connections whose outbound queues
// are emptied by the benchmark instead of by actors.
func routerHub(b *testing.B, n int, codec protocol.Codec) (*Hub, []*link) {
	b.Helper()
	h := &Hub{conns: make(map[ClientID]*conn, n), log: slog.New(slog.DiscardHandler)}
	h.tel = newTelemetry(nil, nil, nil)
	h.rep = reporter{log: h.log, tel: h.tel}
	links := make([]*link, n)
	for i := range links {
		l := &link{codec: codec}
		l.out.l, l.out.maxQueue = l, 4<<20
		// Pretend a flush is already signalled, so send only queues.
		l.out.flushPending.Store(true)
		id := ClientID(i + 1)
		h.conns[id] = &conn{hub: h, id: id, link: l}
		links[i] = l
	}
	return h, links
}

// drain empties the queues the way a flush does, keeping their storage.
func drain(links []*link) {
	for _, l := range links {
		o := &l.out
		for _, f := range o.queue {
			envBuffers.put(f.pooled)
		}
		clear(o.queue)
		o.queue = o.queue[:0]
		o.queued.Store(0)
	}
}

// wireModes are the wire formats the router benchmarks run in.
var wireModes = []struct {
	name  string
	codec protocol.Codec
}{{"raw", nil}, {"marmot.v1", protocol.Binary}}

// BenchmarkRouterBroadcast is one Broadcast to n connections: registry walk,
// one encoding and one PreparedMessage per wire format, one queue append per
// connection. allocs/op does not grow with n.
func BenchmarkRouterBroadcast(b *testing.B) {
	payload := make([]byte, 64)
	for _, mode := range wireModes {
		for _, n := range []int{10, 1000, 5000} {
			b.Run(fmt.Sprintf("%s/%d", mode.name, n), func(b *testing.B) {
				h, links := routerHub(b, n, mode.codec)
				b.ReportAllocs()
				for b.Loop() {
					if got, err := h.Broadcast(payload); got != n || err != nil {
						b.Fatalf("Broadcast = %d, %v", got, err)
					}
					b.StopTimer()
					drain(links)
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
			})
		}
	}
}

// BenchmarkRouterSendToClient is one targeted send: registry lookup, one
// envelope encoding, one queue append.
func BenchmarkRouterSendToClient(b *testing.B) {
	payload := make([]byte, 64)
	for _, mode := range wireModes {
		b.Run(mode.name, func(b *testing.B) {
			h, links := routerHub(b, 1000, mode.codec)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := h.SendToClient(ClientID(i%1000+1), payload); err != nil {
					b.Fatal(err)
				}
				if i++; i%1000 == 0 {
					drain(links)
				}
			}
		})
	}
}

// BenchmarkInbound is the reader's per-frame work after gorilla: store the
// frame (plaintext) or open it (secure profile), decode it into a Message,
// drop the pipeline's reference. The /released variants have the handler
// release the message, so frames and their storage are reused.
func BenchmarkInbound(b *testing.B) {
	for _, size := range []int{64, 1024} {
		for _, release := range []bool{false, true} {
			suffix := ""
			if release {
				suffix = "/released"
			}
			payload := make([]byte, size)
			env, err := protocol.Binary.Append(nil, &protocol.Envelope{Kind: protocol.KindData, Payload: payload})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("raw/%dB%s", size, suffix), func(b *testing.B) {
				l := &link{}
				benchInbound(b, l, websocket.BinaryMessage, payload, release)
			})
			b.Run(fmt.Sprintf("marmot.v1/%dB%s", size, suffix), func(b *testing.B) {
				l := &link{codec: protocol.Binary}
				benchInbound(b, l, websocket.BinaryMessage, env, release)
			})
			for _, ks := range []crypto.KeySize{crypto.KeySize128, crypto.KeySize256} {
				b.Run(fmt.Sprintf("marmot.v1+gcm%d/%dB%s", ks.Bits(), size, suffix), func(b *testing.B) {
					server, client := sessionPair(b, ks)
					l := &link{codec: protocol.Binary, sess: server}
					frames := make([][]byte, 4096)
					for i := range frames {
						if frames[i], err = client.Seal(nil, env); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportAllocs()
					b.SetBytes(int64(len(env)))
					i := 0
					for b.Loop() {
						if i == len(frames) { // sequence numbers: seal more
							b.StopTimer()
							for j := range frames {
								frames[j], _ = client.Seal(frames[j][:0], env)
							}
							i = 0
							b.StartTimer()
						}
						inboundStep(b, l, websocket.BinaryMessage, frames[i], release)
						i++
					}
				})
			}
		}
	}
}

func benchInbound(b *testing.B, l *link, typ int, frame []byte, release bool) {
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		inboundStep(b, l, typ, frame, release)
	}
}

// inboundStep is what link.Message and the actor do with one frame, minus
// the socket and the mailbox.
func inboundStep(b *testing.B, l *link, typ int, frame []byte, release bool) {
	in := newInbound(l, typ)
	in.size = len(frame)
	if l.encrypted() {
		in.data = frame
	} else {
		in.data = in.store(frame)
	}
	m, _, err := decodeInbound(l, in, 1)
	if err != nil {
		b.Fatal(err)
	}
	if release {
		m.Release()
	}
	in.unref()
}

// sessionPair runs the secure handshake in memory (cheap KDF: only the
// per-message path is measured).
func sessionPair(b *testing.B, ks crypto.KeySize) (server, client *crypto.Session) {
	b.Helper()
	mk, err := crypto.DeriveMasterKey([]byte("bench passphrase"), make([]byte, 16), crypto.KDFParams{Iterations: 1000})
	if err != nil {
		b.Fatal(err)
	}
	ring, err := crypto.NewKeyring([]byte("bench passphrase"))
	if err != nil {
		b.Fatal(err)
	}
	sh, err := crypto.NewServerHandshake(crypto.ServerConfig{Key: mk, Mode: crypto.ModeGCM, KeySize: ks})
	if err != nil {
		b.Fatal(err)
	}
	ch, err := crypto.NewClientHandshake(crypto.ClientConfig{Keyring: ring, Mode: crypto.ModeGCM, KeySize: ks,
		Limits: crypto.KDFLimits{MinPBKDF2Iterations: 1}}, sh.Hello())
	if err != nil {
		b.Fatal(err)
	}
	server, fin, err := sh.Finish(ch.Hello())
	if err != nil {
		b.Fatal(err)
	}
	if client, err = ch.Finish(fin); err != nil {
		b.Fatal(err)
	}
	return server, client
}

// BenchmarkConnLimiterCheck is the per-message cost of the rate limits:
// both buckets, under the rate. It must not allocate. (With no limits the
// link has no limiter and the check is one nil test.)
func BenchmarkConnLimiterCheck(b *testing.B) {
	lim := newConnLimiter(Limits{MessagesPerSecond: 1e9, BytesPerSecond: 1e12}, 1<<20)
	in := &inbound{size: 64}
	b.ReportAllocs()
	for b.Loop() {
		if !lim.check(in, time.Now()) { // the reader reads the clock too
			b.Fatal("over the rate")
		}
	}
}
