package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/jwtauth"
)

// CLI defaults of the limits: generous for people, tight for a flood.
const (
	defaultRateMessages    = 1000    // messages per second per connection
	defaultRateBytes       = 4 << 20 // bytes per second per connection
	defaultIPRate          = 20      // new connections per second per address
	defaultIPBurst         = 50
	defaultIPMaxConnection = 256 // open connections per address
)

// serveSecurityFlags are serve's TLS, origin, JWT and limit options.
type serveSecurityFlags struct {
	tlsCert, tlsKey string
	origins         string
	jwtSecret       string
	jwtSecretFile   string
	jwtPublicKey    string
	authTimeout     time.Duration
	rateBytes       int64
	limits          marmot.Limits
	policy          string
}

func addServeSecurityFlags(fs *flag.FlagSet) *serveSecurityFlags {
	f := &serveSecurityFlags{}
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve wss:// with this PEM certificate (chain) `file` (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the PEM private key `file` of --tls-cert")
	fs.StringVar(&f.origins, "allowed-origins", "", "comma-separated Origin `patterns` let in besides same-origin (\"*.example.com\", \"https://app.example.com\"); others get 403")
	fs.StringVar(&f.jwtSecret, "jwt-secret", "", "require a JWT signed HS256 with this `secret` (at least 32 bytes; visible in the process list: prefer --jwt-secret-file)")
	fs.StringVar(&f.jwtSecretFile, "jwt-secret-file", "", "read the HS256 JWT secret from this `file` (trailing newline ignored)")
	fs.StringVar(&f.jwtPublicKey, "jwt-public-key", "", "require a JWT signed RS256 or EdDSA, verified with this PEM public key or certificate `file`")
	fs.DurationVar(&f.authTimeout, "auth-timeout", marmot.DefaultAuthTimeout, "with --jwt-*: how long a client without a token in its upgrade request has to send one as its first message (marmot.auth) before it is closed with 4503")
	l := &f.limits
	fs.Float64Var(&l.MessagesPerSecond, "rate-messages", defaultRateMessages, "inbound messages per second per connection (burst: one second's worth; 0: off)")
	fs.Int64Var(&f.rateBytes, "rate-bytes", defaultRateBytes, "inbound bytes per second per connection, with bursts of one second's worth or --max-message-size (0: off)")
	fs.StringVar(&f.policy, "rate-policy", "close", "a message over --rate-messages or --rate-bytes: close (1008) or drop (and log)")
	fs.Float64Var(&l.ConnectionsPerSecondPerIP, "ip-rate", defaultIPRate, "new connections per second per client address (IPv4, or IPv6 /64); over it: 429 (0: off)")
	fs.IntVar(&l.ConnectionBurstPerIP, "ip-burst", defaultIPBurst, "burst of --ip-rate")
	fs.IntVar(&l.MaxConnectionsPerIP, "ip-max-connections", defaultIPMaxConnection, "open connections per client address; over it: 429 (0: unlimited)")
	return f
}

// apply fills cfg's TLS, origin, authentication and limit settings.
func (f *serveSecurityFlags) apply(cfg *marmot.ServerConfig) error {
	cfg.TLSCertFile, cfg.TLSKeyFile = f.tlsCert, f.tlsKey
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	for _, o := range strings.Split(f.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, o)
		}
	}
	f.limits.BytesPerSecond = float64(f.rateBytes)
	switch f.policy {
	case "close":
		f.limits.Policy = marmot.RateLimitClose
	case "drop":
		f.limits.Policy = marmot.RateLimitDrop
	default:
		return fmt.Errorf("invalid value %q for flag -rate-policy: want close or drop", f.policy)
	}
	if err := f.limits.Validate(); err != nil {
		return err
	}
	cfg.Limits = f.limits
	given := 0
	for _, s := range []string{f.jwtSecret, f.jwtSecretFile, f.jwtPublicKey} {
		if s != "" {
			given++
		}
	}
	if given > 1 {
		return errors.New("give one of --jwt-secret, --jwt-secret-file and --jwt-public-key")
	}
	var jc jwtauth.Config
	switch {
	case f.jwtSecret != "":
		jc.Secret = []byte(f.jwtSecret)
	case f.jwtSecretFile != "":
		b, err := os.ReadFile(f.jwtSecretFile)
		if err != nil {
			return fmt.Errorf("--jwt-secret-file: %w", err)
		}
		jc.Secret = []byte(strings.TrimRight(string(b), "\r\n"))
	case f.jwtPublicKey != "":
		b, err := os.ReadFile(f.jwtPublicKey)
		if err != nil {
			return fmt.Errorf("--jwt-public-key: %w", err)
		}
		if jc.PublicKey, err = jwtauth.ParsePublicKey(b); err != nil {
			return fmt.Errorf("--jwt-public-key: %w", err)
		}
	default:
		return nil
	}
	a, err := jwtauth.New(jc)
	if err != nil {
		return err
	}
	a.Apply(cfg)
	if f.authTimeout <= 0 {
		return errors.New("--auth-timeout must be positive")
	}
	cfg.AuthTimeout = f.authTimeout
	return nil
}

// connectSecurityFlags are connect's TLS and token options.
type connectSecurityFlags struct {
	ca             string
	insecure       bool
	token          string
	tokenInMessage bool
}

func addConnectSecurityFlags(fs *flag.FlagSet) *connectSecurityFlags {
	f := &connectSecurityFlags{}
	fs.StringVar(&f.ca, "ca", "", "trust the server certificates signed by this PEM CA `file` (wss://), instead of the system's")
	fs.BoolVar(&f.insecure, "insecure", false, "DANGEROUS: do not verify the server's TLS certificate (anyone in the path can read and change the traffic); for tests only")
	fs.StringVar(&f.token, "token", "", "send this bearer `token` (a JWT) on every connect")
	fs.BoolVar(&f.tokenInMessage, "token-in-message", false, "send --token as the first message (marmot.auth), as browsers do, instead of an Authorization header")
	return f
}

// apply fills cfg's TLS and token settings; a loud warning goes to stderr
// for --insecure.
func (f *connectSecurityFlags) apply(cfg *marmot.ClientConfig, stderr io.Writer) error {
	if f.ca != "" || f.insecure {
		cfg.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if f.ca != "" {
		b, err := os.ReadFile(f.ca)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("--ca: no PEM certificate in %s", f.ca)
		}
		cfg.TLSConfig.RootCAs = pool
	}
	if f.insecure {
		if f.ca != "" {
			return errors.New("give --ca or --insecure, not both")
		}
		fmt.Fprintln(stderr, "WARNING: --insecure: the server's TLS certificate is NOT verified; anyone on the path can read and change this connection")
		cfg.TLSConfig.InsecureSkipVerify = true
	}
	if f.tokenInMessage && f.token == "" {
		return errors.New("--token-in-message needs --token")
	}
	if tok := f.token; tok != "" {
		cfg.Token = func(context.Context) (string, error) { return tok, nil }
		cfg.TokenInMessage = f.tokenInMessage
	}
	return nil
}
