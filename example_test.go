package marmot_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// A server that echoes, as README's quick start and "marmot serve" do, and
// a client that asks it something.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0", // any free port; the default is ":8080"
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{
			// A "time" request gets the server's time; everything else
			// goes back to its sender as it came.
			OnHandleCommand: func(m *marmot.Message) {
				if m.IsRequest() && m.Name == "time" {
					_ = m.Reply([]byte(time.Now().Format(time.RFC3339)))
					return
				}
				_ = m.Reply(m.Payload)
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	c, err := marmot.NewClient(marmot.ClientConfig{
		URL:         srv.URL(),
		Subprotocol: protocol.SubprotocolBinary, // envelopes: commands and requests
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	reply, err := c.Request(ctx, "echo", []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))

	now, err := c.Request(ctx, "time", nil)
	if err != nil {
		log.Fatal(err)
	}
	_, err = time.Parse(time.RFC3339, string(now)) // e.g. 2025-06-01T12:00:00Z
	fmt.Println("the server's time, in RFC 3339:", err == nil)
	// Output:
	// hello
	// the server's time, in RFC 3339: true
}

// A busy handler gives each message back once it has replied, so the
// next messages reuse its storage instead of allocating.
func ExampleMessage_Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) {
				_ = m.Reply(m.Payload) // the reply keeps the payload until it is written
				m.Release()            // m and m.Payload are not touched after this
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	c := exampleClient(ctx, srv.URL()) // as in Example
	defer c.Close(ctx)

	for _, word := range []string{"one", "two", "three"} {
		reply, err := c.Request(ctx, "echo", []byte(word))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(reply))
	}
	// Output:
	// one
	// two
	// three
}

// A Server is an http.Handler: mount it in any mux, next to other routes.
func ExampleServer_ServeHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := marmot.NewServer(marmot.ServerConfig{
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) }, // echo, as in Example
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	hs := httptest.NewServer(mux)
	defer hs.Close()
	defer srv.Stop(ctx) // says 1001 Going Away to the connections it accepted

	c := exampleClient(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws") // as in Example
	defer c.Close(ctx)

	reply, err := c.Request(ctx, "hi", []byte("hello over /ws"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))

	resp, err := hs.Client().Get(hs.URL + "/health") // the mux's other route
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	health, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("health:", string(health))
	// Output:
	// hello over /ws
	// health: ok
}

// exampleClient connects a client that speaks marmot.v1 to url, as Example
// shows in full.
func exampleClient(ctx context.Context, url string) *marmot.Client {
	c, err := marmot.NewClient(marmot.ClientConfig{
		URL:         url,
		Subprotocol: protocol.SubprotocolBinary,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	return c
}

// A client that must not use WebSocket (say, a proxy on the way strips the
// upgrade) talks to the same endpoint over the HTTP fallback transport:
// the server needs nothing more. TransportAuto, the default, falls back by
// itself when the upgrade is refused.
func ExampleClientConfig_transport() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
		ServerEvents: marmot.ServerEvents{
			OnClientConnected: func(ci marmot.ClientInfo) { fmt.Println("server: a client over", ci.Transport) },
			OnHandleCommand:   func(m *marmot.Message) { _ = m.Reply(m.Payload) },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)

	c, err := marmot.NewClient(marmot.ClientConfig{
		URL:         srv.URL(),
		Subprotocol: protocol.SubprotocolBinary,
		Transport:   marmot.TransportHTTP, // POST and long-poll GET on the same path
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	reply, err := c.Request(ctx, "echo", []byte("hello over HTTP"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("client (%s): %s\n", c.Transport(), reply)
	// Output:
	// server: a client over http
	// client (http): hello over HTTP
}
