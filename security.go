package marmot

import (
	"crypto/tls"
	"fmt"

	"github.com/marmotws/marmot/actors"
)

// Identity is who a connection authenticated as (ServerConfig.Authenticate
// or a first-message token): in ClientInfo, on every Message, in the rooms'
// hooks, and its UserID on spans as enduser.id.
type Identity = actors.Identity

// Limits are per-connection message and byte rates and per-IP connection
// limits (ServerConfig.Limits).
type Limits = actors.Limits

// RateLimitPolicy says what a message over its connection's rate gets.
type RateLimitPolicy = actors.RateLimitPolicy

// Rate limit policies.
const (
	// RateLimitClose closes the connection with 1008 (the default).
	RateLimitClose = actors.RateLimitClose
	// RateLimitDrop drops the message and reports ErrRateLimited.
	RateLimitDrop = actors.RateLimitDrop
)

// Close codes of authentication and limits; see docs/PROTOCOL.md.
const (
	ClosePolicyViolation = actors.ClosePolicyViolation // 1008: over a rate limit
	CloseTokenExpired    = actors.CloseTokenExpired    // 4001: reconnect with a fresh token
	CloseUnauthorized    = actors.CloseUnauthorized    // 4503: first-message authentication failed
)

// AuthRequestName is the first-message authentication request.
const AuthRequestName = actors.AuthRequestName

// DefaultAuthTimeout is the default ServerConfig.AuthTimeout.
const DefaultAuthTimeout = actors.DefaultAuthTimeout

// Security errors, testable with errors.Is.
var (
	// ErrOriginRefused: the request's Origin is not allowed (403).
	ErrOriginRefused = actors.ErrOriginRefused
	// ErrUnauthorized: authentication failed or is missing (401; 4503).
	ErrUnauthorized = actors.ErrUnauthorized
	// ErrForbidden: the client is known but not let in (403). Return it
	// from Authenticate.
	ErrForbidden = actors.ErrForbidden
	// ErrNoCredentials: the request carries no credentials (it wraps
	// ErrUnauthorized). Returned by Authenticate, it lets the client
	// authenticate with its first message when AuthenticateToken is set.
	ErrNoCredentials = actors.ErrNoCredentials
	// ErrTokenExpired: the identity expired (4001), or a token was
	// already expired.
	ErrTokenExpired = actors.ErrTokenExpired
	// ErrIPLimit: too many connections, or too fast, from one address (429).
	ErrIPLimit = actors.ErrIPLimit
	// ErrRateLimited: a message over its connection's rate.
	ErrRateLimited = actors.ErrRateLimited
	// ErrNotAuthenticated: a send to a connection still authenticating
	// with its first message.
	ErrNotAuthenticated = actors.ErrNotAuthenticated
	// ErrCertificate: the client does not trust the server's TLS
	// certificate (wrong CA, wrong name, expired). Not retried.
	ErrCertificate = actors.ErrCertificate
)

// serverTLS builds the TLS configuration Start serves with, or nil.
func (c *ServerConfig) serverTLS() (*tls.Config, error) {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, fmt.Errorf("marmot: TLSCertFile and TLSKeyFile go together (got %q and %q)", c.TLSCertFile, c.TLSKeyFile)
	}
	if c.TLSConfig == nil && c.TLSCertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSConfig != nil {
		cfg = c.TLSConfig.Clone()
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("marmot: TLS certificate: %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return nil, fmt.Errorf("marmot: TLSConfig has no certificate (set Certificates or TLSCertFile/TLSKeyFile)")
	}
	// HTTP/1.1 only: the WebSocket upgrade does not run over HTTP/2.
	cfg.NextProtos = []string{"http/1.1"}
	return cfg, nil
}
