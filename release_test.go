package marmot_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
)

// releaseSizes mixes sizes around the pooled storage's bound (64 KiB), so
// recycled frames are handed both smaller and larger messages than the
// storage they kept.
func releaseSize(r *rand.Rand) int {
	switch r.IntN(10) {
	case 0:
		return 4 + r.IntN(70<<10)
	case 1:
		return 4
	default:
		return 4 + r.IntN(3000)
	}
}

// releaseMessage is message i: its index, then bytes derived from it, so
// a reply built from another message's recycled storage cannot match.
func releaseMessage(r *rand.Rand, i int) []byte {
	b := make([]byte, releaseSize(r))
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < len(b); j++ {
		b[j] = byte(i*31 + j*7)
	}
	return b
}

// TestReleasedMessagesEchoIntact: a handler that replies and then releases
// every message gets its storage reused for the next ones, and every echo
// must still come back byte for byte, whether the reply is made in the
// handler or later on another goroutine.
func TestReleasedMessagesEchoIntact(t *testing.T) {
	cases := map[string]func(m *marmot.Message){
		"in handler": func(m *marmot.Message) {
			_ = m.Reply(m.Payload)
			m.Release()
			m.Release() // a second Release does nothing
		},
		"on another goroutine": func(m *marmot.Message) {
			go func() {
				_ = m.Reply(m.Payload)
				m.Release()
			}()
		},
	}
	for name, handler := range cases {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{OnHandleCommand: handler}})
			ws := dial(t, s.URL(), "")
			const total, window = 1500, 16
			r := rand.New(rand.NewPCG(1, 2))
			sent := make([][]byte, total)
			for i := range sent {
				sent[i] = releaseMessage(r, i)
			}
			var werr error
			var wmu sync.Mutex
			credit := make(chan struct{}, window)
			for range window {
				credit <- struct{}{}
			}
			go func() {
				for i := range total {
					<-credit
					wmu.Lock()
					werr = ws.WriteMessage(websocket.BinaryMessage, sent[i])
					wmu.Unlock()
					if werr != nil {
						return
					}
				}
			}()
			_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
			seen := make([]bool, total)
			for range total {
				_, got, err := ws.ReadMessage()
				if err != nil {
					wmu.Lock()
					t.Fatalf("read: %v (write: %v)", err, werr)
				}
				credit <- struct{}{}
				if len(got) < 4 {
					t.Fatalf("reply of %d bytes", len(got))
				}
				i := int(binary.BigEndian.Uint32(got))
				if i >= total || seen[i] {
					t.Fatalf("reply names message %d twice or out of range", i)
				}
				seen[i] = true
				if !bytes.Equal(got, sent[i]) {
					t.Fatalf("message %d (%d bytes) came back changed (%d bytes)", i, len(sent[i]), len(got))
				}
			}
		})
	}
}

// TestReleasedMessagesEncrypted: the same with the secure profile, where
// the plaintext is opened into the recycled storage, and with the client
// releasing the replies it receives.
func TestReleasedMessagesEncrypted(t *testing.T) {
	s := encryptedServer(t, marmot.EncryptionConfig{EncryptionProfile: "secure", EncryptionMode: "gcm"},
		marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) {
			_ = m.Reply(m.Payload)
			m.Release()
		}})
	got := make(chan []byte, 64)
	c := newClient(t, marmot.ClientConfig{URL: s.URL(),
		EncryptionConfig: marmot.EncryptionConfig{EncryptionEnabled: true, EncryptionKey: testKey,
			EncryptionMode: "gcm", EncryptionProfile: "secure"},
		ClientEvents: marmot.ClientEvents{OnHandleCommand: func(m *marmot.Message) {
			got <- bytes.Clone(m.Payload)
			m.Release()
		}}})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	const total, window = 600, 8
	sent := make([][]byte, 0, total)
	for i := range total {
		if i >= window {
			want := sent[i-window]
			if b := recv(t, got, "echo"); !bytes.Equal(b, want) {
				t.Fatalf("message %d came back changed", i-window)
			}
		}
		msg := releaseMessage(r, i)
		sent = append(sent, msg)
		if err := c.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	for i := total - window; i < total; i++ {
		if b := recv(t, got, "echo"); !bytes.Equal(b, sent[i]) {
			t.Fatalf("message %d came back changed", i)
		}
	}
}
