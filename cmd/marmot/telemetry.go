package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// telemetryShutdownTimeout bounds flushing spans and stopping the metrics
// endpoint on exit: an unreachable collector must not hold the process.
const telemetryShutdownTimeout = 5 * time.Second

// The standard OpenTelemetry environment variables the CLI looks at itself;
// the SDK and the OTLP exporter read the rest (OTEL_TRACES_SAMPLER,
// OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES, ...).
const (
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
)

// propagator is W3C trace context plus baggage. It becomes the global
// propagator too, so code the user adds around marmot (HTTP clients, other
// libraries) speaks the same format as marmot's envelopes.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// traceFlags are the tracing flags both subcommands share.
type traceFlags struct {
	stdout bool
}

func addTraceFlags(fs *flag.FlagSet) *traceFlags {
	f := &traceFlags{}
	fs.BoolVar(&f.stdout, "trace-stdout", false, "print every finished span to stdout, one compact JSON object per line (debugging; logs stay on stderr); OTLP export is configured by the OTEL_EXPORTER_OTLP_* environment variables")
	return f
}

// tracing is the TracerProvider the CLI built, if any.
type tracing struct {
	tp   *sdktrace.TracerProvider // nil: tracing off
	errw io.Writer                // where problems are reported
}

// provider returns the TracerProvider to hand to marmot: nil (marmot's
// default, the global no-op provider) when nothing exports spans, so tracing
// costs nothing.
func (t *tracing) provider() trace.TracerProvider {
	if t.tp == nil {
		return nil
	}
	return t.tp
}

// shutdown flushes buffered spans, bounded by telemetryShutdownTimeout.
// Failures go straight to stderr: connect logs only errors by default, and
// spans lost on exit are worth knowing about at any level.
func (t *tracing) shutdown(ctx context.Context) {
	if t.tp == nil {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryShutdownTimeout)
	defer cancel()
	if err := t.tp.Shutdown(sctx); err != nil {
		fmt.Fprintf(t.errw, "marmot: flushing traces: %v\n", err)
	}
}

// otlpConfigured reports whether the environment asks for OTLP trace export:
// an endpoint is set and OTEL_TRACES_EXPORTER does not say "none". Without an
// endpoint there is no exporter at all, rather than one that tries
// localhost:4318 and logs an error every few seconds.
func otlpConfigured() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(envTracesExporter)), "none") {
		return false
	}
	return os.Getenv(envOTLPEndpoint) != "" || os.Getenv(envOTLPTracesEndpoint) != ""
}

// setupTracing builds the TracerProvider for a subcommand from the
// environment and flags. service is the default service.name, which
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override. It also installs
// the global propagator. With --trace-stdout, spans go to stdout, one JSON
// object per line; problems are reported on stderr.
func setupTracing(ctx context.Context, service string, f *traceFlags, stdout, stderr io.Writer) (*tracing, error) {
	otel.SetTextMapPropagator(propagator)
	var opts []sdktrace.TracerProviderOption
	if otlpConfigured() {
		for _, k := range []string{envOTLPTracesProtocol, envOTLPProtocol} {
			if p := os.Getenv(k); p != "" && p != "http/protobuf" {
				// Only the HTTP exporter is linked in; say so instead of
				// silently sending protobuf over HTTP to a gRPC port.
				fmt.Fprintf(stderr, "marmot: only OTLP over http/protobuf is supported; ignoring %s=%s\n", k, p)
			}
		}
		// The exporter reads the endpoint, headers, timeout, compression
		// and TLS settings from OTEL_EXPORTER_OTLP_* itself.
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if f.stdout {
		// Compact (the exporter's default, no WithPrettyPrint): one span
		// per line, written in one Write, which run's lockedWriter keeps
		// whole among the command's other stdout lines.
		exp, err := stdouttrace.New(stdouttrace.WithWriter(stdout))
		if err != nil {
			return nil, fmt.Errorf("stdout trace exporter: %w", err)
		}
		// Synchronous, so a span shows up the moment it ends: this is a
		// debugging aid, not a production path.
		opts = append(opts, sdktrace.WithSyncer(exp))
	}
	if len(opts) == 0 {
		return &tracing{errw: stderr}, nil
	}
	// Later detectors win: the default service name first, then what the
	// environment says.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES still yields the rest.
		fmt.Fprintf(stderr, "marmot: trace resource: %v\n", err)
	}
	// No WithSampler: the SDK then reads OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on).
	opts = append(opts, sdktrace.WithResource(res))
	return &tracing{tp: sdktrace.NewTracerProvider(opts...), errw: stderr}, nil
}

// metricsEndpoint serves Prometheus /metrics for one server.
type metricsEndpoint struct {
	mp   *sdkmetric.MeterProvider
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startMetrics listens on addr and serves the metrics of the MeterProvider
// it returns on /metrics. The registry is private to the endpoint, so only
// marmot's and the Go runtime's and process's metrics appear (protoactor's
// own actor metrics are never on), and nothing global is registered twice
// when a test runs several servers.
func startMetrics(ctx context.Context, addr string, log *slog.Logger) (*metricsEndpoint, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		// Classic Prometheus names (marmot_messages_received_total) rather
		// than the UTF-8 dotted names the exporter otherwise picks when
		// prometheus/common allows them: they work in every PromQL
		// version and dashboard without quoting.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("metrics: prometheus exporter: %w", err)
	}
	m := &metricsEndpoint{
		mp:   sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		ln:   ln,
		done: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped serving", "err", err)
		}
	}()
	return m, nil
}

// MeterProvider is what ServerConfig.MeterProvider gets.
func (m *metricsEndpoint) provider() metric.MeterProvider { return m.mp }

// url is the scrape URL, with a loopback host when listening on all
// interfaces so that it can be pasted into a browser or curl.
func (m *metricsEndpoint) url() string {
	host, port, _ := net.SplitHostPort(m.ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics"
}

// shutdown stops the endpoint and the MeterProvider, bounded by
// telemetryShutdownTimeout.
func (m *metricsEndpoint) shutdown(ctx context.Context, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryShutdownTimeout)
	defer cancel()
	if err := m.srv.Shutdown(sctx); err != nil {
		_ = m.srv.Close()
	}
	<-m.done
	if err := m.mp.Shutdown(sctx); err != nil {
		log.Warn("stopping metrics failed", "err", err)
	}
}
