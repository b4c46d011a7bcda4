package marmot_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// Compression is turned on at both ends; messages of Threshold bytes and
// more then travel compressed (permessage-deflate), in both directions.
func ExampleCompression() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	compression := marmot.Compression{Enabled: true, Threshold: 256}
	srv, err := marmot.NewServer(marmot.ServerConfig{
		Addr:         "127.0.0.1:0",
		Logger:       slog.New(slog.DiscardHandler),
		Compression:  compression,
		ServerEvents: marmot.ServerEvents{OnHandleCommand: func(m *marmot.Message) { _ = m.Reply(m.Payload) }},
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
		Logger:      slog.New(slog.DiscardHandler),
		Compression: compression,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	big := bytes.Repeat([]byte(`{"user":"marmot","text":"hello"},`), 32) // compressed both ways
	reply, err := c.Request(ctx, "echo", big)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(reply), bytes.Equal(reply, big))
	// Output: 1056 true
}
