package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// dialCoder connects a coder/websocket client, offering subprotocol if set.
func dialCoder(t *testing.T, url, subprotocol string) *websocket.Conn {
	t.Helper()
	opts := &websocket.DialOptions{}
	if subprotocol != "" {
		opts.Subprotocols = []string{subprotocol}
	}
	c, resp, err := websocket.Dial(timeout(t), url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if resp.Body != nil {
		_ = resp.Body.Close()
	}
	if got := c.Subprotocol(); got != subprotocol {
		t.Fatalf("negotiated subprotocol %q, want %q", got, subprotocol)
	}
	// Room for 1 MiB echoes; coder's default read limit is 32 KiB.
	c.SetReadLimit(2 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func TestCoderRawEcho(t *testing.T) {
	srv := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{OnHandleCommand: echo}})
	c := dialCoder(t, srv.URL(), "")
	ctx := timeout(t)
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		data []byte
	}{
		{"text", websocket.MessageText, []byte("hello, marmot ✓")},
		{"binary", websocket.MessageBinary, []byte{0xff, 0x00, 0xfe, 0x01}},
		{"ASCII in binary", websocket.MessageBinary, []byte("still binary")},
		{"empty text", websocket.MessageText, nil},
		{"64 KiB text", websocket.MessageText, bytes.Repeat([]byte("0123456789abcdef"), 4096)},
	} {
		if err := c.Write(ctx, tc.typ, tc.data); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("%s: read: %v", tc.name, err)
		}
		if typ != tc.typ || !bytes.Equal(data, tc.data) {
			t.Errorf("%s: got %v of %d bytes, want %v of %d bytes", tc.name, typ, len(data), tc.typ, len(tc.data))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestCoderMessageSizeLimit(t *testing.T) {
	disconnected := make(chan *marmot.CloseError, 2)
	srv := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnHandleCommand:      echo,
		OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) { disconnected <- r },
	}})
	if got := srv.Config().MaxMessageSize; got != 1<<20 {
		t.Fatalf("default MaxMessageSize %d, want 1 MiB", got)
	}
	big := make([]byte, 1<<20+1)
	for i := range big {
		big[i] = byte(i * 7)
	}

	t.Run("exactly 1 MiB is echoed", func(t *testing.T) {
		c := dialCoder(t, srv.URL(), "")
		ctx := timeout(t)
		if err := c.Write(ctx, websocket.MessageBinary, big[:1<<20]); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(data, big[:1<<20]) {
			t.Fatalf("got %v of %d bytes, want the 1 MiB binary message back", typ, len(data))
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("close: %v", err)
		}
		if r := recv(t, disconnected, "OnClientDisconnected"); r.Code != marmot.CloseNormal {
			t.Errorf("server saw %+v, want 1000", r)
		}
	})

	t.Run("1 MiB + 1 closes with 1009", func(t *testing.T) {
		c := dialCoder(t, srv.URL(), "")
		ctx := timeout(t)
		// The write may or may not complete before the server gives up on
		// the frame; either way the answer must be a 1009 close frame.
		_ = c.Write(ctx, websocket.MessageBinary, big)
		_, _, err := c.Read(ctx)
		if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
			t.Fatalf("read error %v (close status %d), want close status 1009", err, code)
		}
		r := recv(t, disconnected, "OnClientDisconnected")
		if r.Code != marmot.CloseMessageTooBig || r.ByPeer || !errors.Is(r, marmot.ErrMessageTooLarge) {
			t.Errorf("server saw %+v, want a local 1009 with ErrMessageTooLarge", r)
		}
	})
}

// jsonEnvelope is a marmot.json.v1 object as its spec describes it (members
// v, kind, id, name, code, payload, payload_b64), encoded with encoding/json
// rather than the protocol package, so the test checks the wire format
// rather than the codec against itself.
type jsonEnvelope struct {
	V          int    `json:"v"`
	Kind       string `json:"kind"`
	ID         uint64 `json:"id,omitempty"`
	Name       string `json:"name,omitempty"`
	Code       uint32 `json:"code,omitempty"`
	Payload    string `json:"payload,omitempty"`
	PayloadB64 string `json:"payload_b64,omitempty"`
}

func TestCoderJSONEnvelope(t *testing.T) {
	connected := make(chan marmot.ClientID, 1)
	srv := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(info marmot.ClientInfo) { connected <- info.ID },
		OnHandleCommand: func(m *marmot.Message) {
			switch {
			case m.IsRequest() && m.Name == "sum" && string(m.Payload) == "2+2":
				_ = m.Reply([]byte("4"))
			case m.IsRequest():
				_ = m.ReplyError(404, "no such command: "+m.Name)
			default:
				_ = m.Reply(m.Payload)
			}
		},
	}})
	c := dialCoder(t, srv.URL(), protocol.SubprotocolJSON)
	id := recv(t, connected, "OnClientConnected")
	ctx := timeout(t)

	// exchange writes env and checks the text frame that comes back, byte
	// for byte: the encoder's output is canonical (fixed member order, no
	// spaces), which browser peers may rely on when logging or diffing.
	exchange := func(name string, env jsonEnvelope, want string) {
		t.Helper()
		if err := wsjson.Write(ctx, c, env); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("%s: read: %v", name, err)
		}
		if typ != websocket.MessageText || string(data) != want {
			t.Errorf("%s: got %v %s\nwant text %s", name, typ, data, want)
		}
	}
	exchange("request",
		jsonEnvelope{V: 1, Kind: "request", ID: 7, Name: "sum", Payload: "2+2"},
		`{"v":1,"kind":"reply","id":7,"payload":"4"}`)
	exchange("error reply",
		jsonEnvelope{V: 1, Kind: "request", ID: 8, Name: "nope"},
		`{"v":1,"kind":"error","id":8,"code":404,"payload":"no such command: nope"}`)
	exchange("command",
		jsonEnvelope{V: 1, Kind: "command", Name: "greet", Payload: "hi \"there\"\n"},
		`{"v":1,"kind":"command","name":"greet","payload":"hi \"there\"\n"}`)
	exchange("binary data",
		jsonEnvelope{V: 1, Kind: "data", PayloadB64: "AP8="}, // 0x00 0xff is not UTF-8
		`{"v":1,"kind":"data","payload_b64":"AP8="}`)

	// Server-initiated command, read with wsjson as a browser would parse it.
	if err := srv.SendCommandToClient(id, "tick", []byte("1")); err != nil {
		t.Fatal(err)
	}
	var tick jsonEnvelope
	if err := wsjson.Read(ctx, c, &tick); err != nil {
		t.Fatal(err)
	}
	if want := (jsonEnvelope{V: 1, Kind: "command", Name: "tick", Payload: "1"}); tick != want {
		t.Errorf("got %+v, want %+v", tick, want)
	}

	// A version this server does not speak ends the connection with 1002.
	bad, _ := json.Marshal(jsonEnvelope{V: 2, Kind: "data", Payload: "from the future"})
	if err := c.Write(ctx, websocket.MessageText, bad); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusProtocolError {
		t.Fatalf("after a v2 envelope: %v (close status %d), want close status 1002", err, code)
	}
}

// TestCoderRawBroadcastTypes: Broadcast picks the frame type from the data
// (text when valid UTF-8), the same for every raw recipient.
func TestCoderRawBroadcastTypes(t *testing.T) {
	connected := make(chan struct{}, 2)
	srv := startServer(t, marmot.ServerConfig{ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(marmot.ClientInfo) { connected <- struct{}{} },
	}})
	a := dialCoder(t, srv.URL(), "")
	b := dialCoder(t, srv.URL(), "")
	recv(t, connected, "first connection")
	recv(t, connected, "second connection")
	ctx := timeout(t)
	for _, tc := range []struct {
		data []byte
		typ  websocket.MessageType
	}{
		{[]byte("text for all"), websocket.MessageText},
		{[]byte{0xc3, 0x28}, websocket.MessageBinary}, // invalid UTF-8
	} {
		if n, err := srv.Broadcast(tc.data); n != 2 || err != nil {
			t.Fatalf("Broadcast = %d, %v; want 2, nil", n, err)
		}
		for _, c := range []*websocket.Conn{a, b} {
			typ, data, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if typ != tc.typ || !bytes.Equal(data, tc.data) {
				t.Errorf("got %v %q, want %v %q", typ, data, tc.typ, tc.data)
			}
		}
	}
}
