package test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// tracingConns request/reply loops run at once in BenchmarkEchoTracing, one
// marmot Client each; a request is the path where tracing does the most
// (client span, trace context injected and extracted, server span).
const tracingConns = 16

// tracingVariant is one way of configuring tracing on both ends.
type tracingVariant struct {
	name string
	// provider returns the TracerProvider for server and clients and a
	// function that shuts it down.
	provider func() (trace.TracerProvider, func(context.Context) error)
}

var tracingVariants = []tracingVariant{
	// What a user who never configures OpenTelemetry gets.
	{"off", func() (trace.TracerProvider, func(context.Context) error) {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }
	}},
	// The SDK installed but sampling nothing: spans are created but not
	// recorded; trace context is still propagated (unsampled).
	{"never_sample", func() (trace.TracerProvider, func(context.Context) error) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()),
			sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		return tp, tp.Shutdown
	}},
	// Everything recorded and handed to a batching exporter, as in
	// production, minus the network: the exporter discards the batches.
	{"always_sample", func() (trace.TracerProvider, func(context.Context) error) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		return tp, tp.Shutdown
	}},
}

// BenchmarkEchoTracing measures request/reply round trips through a marmot
// server with tracing off, on but never sampling, and always sampling, and
// logs the ratios between them (shown with -v). Run all variants in one
// invocation so they share the machine's state:
//
//	go test -run '^$' -bench EchoTracing -benchtime 100000x -count 5 -v ./test/
func BenchmarkEchoTracing(b *testing.B) {
	nsPerOp := map[string]float64{}
	for _, v := range tracingVariants {
		b.Run(v.name, func(b *testing.B) {
			nsPerOp[v.name] = benchEchoTracing(b, v)
		})
	}
	base := nsPerOp["off"]
	if base == 0 {
		return // a -bench filter skipped the baseline
	}
	var sb strings.Builder
	for _, v := range tracingVariants {
		if ns, ok := nsPerOp[v.name]; ok {
			fmt.Fprintf(&sb, "\n  %-14s %10.0f ns/op  %10.0f msgs/s  %.2fx off", v.name, ns, 1e9/ns, ns/base)
		}
	}
	b.Logf("tracing overhead (%d concurrent requesters):%s", tracingConns, sb.String())
}

// benchEchoTracing runs b.N requests over tracingConns clients and returns
// the wall-clock ns per request of this (the last, largest) run.
func benchEchoTracing(b *testing.B, v tracingVariant) float64 {
	tp, shutdown := v.provider()
	// Registered before startServer's cleanup, so it runs after the server
	// has stopped and flushes what it ended.
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	})
	srv := startServer(b, marmot.ServerConfig{
		TracerProvider: tp,
		ServerEvents:   marmot.ServerEvents{OnHandleCommand: echo},
	})
	clients := make([]*marmot.Client, tracingConns)
	for i := range clients {
		c, err := marmot.NewClient(marmot.ClientConfig{URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary,
			TracerProvider: tp, Logger: logger()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Close(ctx)
		})
		if err := c.Connect(timeout(b)); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	msg := bytes.Repeat([]byte("t"), echoSize)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	perTrip := roundTrips(b, len(clients), func(i int) error {
		reply, err := clients[i].Request(ctx, "echo", msg)
		if err != nil {
			return fmt.Errorf("request: %w", err)
		}
		if len(reply) != echoSize {
			return fmt.Errorf("reply of %d bytes", len(reply))
		}
		return nil
	})
	return float64(perTrip.Nanoseconds())
}
