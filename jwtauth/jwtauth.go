// Package jwtauth is a ready-made marmot authenticator for JSON Web Tokens
// (github.com/golang-jwt/jwt/v5): HS256 with a shared secret, RS256 or
// EdDSA (Ed25519) with a public key.
//
// A client presents its token in the upgrade request, as
// "Authorization: Bearer TOKEN" or a query parameter (?token=...), or, for
// browsers, which cannot set headers, as its first message (a marmot.auth
// request; docs/PROTOCOL.md section 7). The token's "sub" claim is the
// user id; its "exp", when present, ends the connection with 4001
// (marmot.CloseTokenExpired) when it passes, and the client reconnects with
// a fresh one (marmot.ClientConfig.Token).
//
//	auth, err := jwtauth.New(jwtauth.Config{Secret: secret})
//	cfg := marmot.ServerConfig{}
//	auth.Apply(&cfg) // Authenticate and AuthenticateToken
//
// Every refusal wraps marmot.ErrUnauthorized (HTTP 401; close 4503 for a
// first-message token); an expired token also marmot.ErrTokenExpired. A
// request without a token gets marmot.ErrNoCredentials, which lets the
// client authenticate with its first message.
package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/protocol"
)

// Config configures an Authenticator. Set Secret or PublicKey.
type Config struct {
	// Secret verifies HS256 tokens. At least 32 bytes.
	Secret []byte
	// PublicKey verifies RS256 (*rsa.PublicKey) or EdDSA
	// (ed25519.PublicKey) tokens; see ParsePublicKey.
	PublicKey crypto.PublicKey
	// Header is the request header carrying "Bearer TOKEN". Default
	// "Authorization".
	Header string
	// QueryParam is the query parameter that may carry the token instead.
	// Default "token"; "-" turns it off. Tokens in URLs end up in access
	// logs: prefer the header, or the first message.
	QueryParam string
	// UserClaim names the claim that is the user id. Default "sub".
	UserClaim string
	// Issuer and Audience, when set, must match the token's "iss" and
	// one of its "aud".
	Issuer, Audience string
	// RequireExpiry refuses tokens without "exp".
	RequireExpiry bool
	// Leeway tolerates clock skew on "exp", "nbf" and "iat".
	Leeway time.Duration
}

// Authenticator verifies tokens; it is safe for concurrent use.
type Authenticator struct {
	cfg    Config
	key    any
	parser *jwt.Parser
}

// ErrConfig is a configuration New refuses.
var ErrConfig = errors.New("jwtauth: invalid configuration")

// MinSecretSize is the shortest HS256 secret New accepts.
const MinSecretSize = 32

// New checks cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Header == "" {
		cfg.Header = "Authorization"
	}
	if cfg.QueryParam == "" {
		cfg.QueryParam = "token"
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	a := &Authenticator{cfg: cfg}
	var method string
	switch k := cfg.PublicKey; {
	case len(cfg.Secret) > 0 && k != nil:
		return nil, fmt.Errorf("%w: set Secret or PublicKey, not both", ErrConfig)
	case len(cfg.Secret) > 0:
		if len(cfg.Secret) < MinSecretSize {
			return nil, fmt.Errorf("%w: Secret of %d bytes, want at least %d", ErrConfig, len(cfg.Secret), MinSecretSize)
		}
		a.key, method = cfg.Secret, jwt.SigningMethodHS256.Alg()
	case k == nil:
		return nil, fmt.Errorf("%w: set Secret or PublicKey", ErrConfig)
	default:
		switch pk := k.(type) {
		case *rsa.PublicKey:
			a.key, method = pk, jwt.SigningMethodRS256.Alg()
		case ed25519.PublicKey:
			a.key, method = pk, jwt.SigningMethodEdDSA.Alg()
		default:
			return nil, fmt.Errorf("%w: PublicKey of type %T (want *rsa.PublicKey or ed25519.PublicKey)", ErrConfig, k)
		}
	}
	// One algorithm, chosen by the key: a token cannot pick another (the
	// "alg: none" and HS256-with-the-public-key attacks).
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{method}), jwt.WithLeeway(cfg.Leeway), jwt.WithIssuedAt()}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.RequireExpiry {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// Apply installs a as cfg's Authenticate and AuthenticateToken hooks.
func (a *Authenticator) Apply(cfg *marmot.ServerConfig) {
	cfg.Authenticate = a.Authenticate
	cfg.AuthenticateToken = a.AuthenticateToken
}

// Authenticate is a marmot.ServerConfig.Authenticate hook: the token from
// the header or the query parameter, verified. Without one it returns
// marmot.ErrNoCredentials.
func (a *Authenticator) Authenticate(r *http.Request) (*marmot.Identity, error) {
	token := ""
	if h := r.Header.Get(a.cfg.Header); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, fmt.Errorf("%w: %s is not a Bearer token", marmot.ErrUnauthorized, a.cfg.Header)
		}
		token = strings.TrimSpace(rest)
	} else if a.cfg.QueryParam != "-" {
		token = r.URL.Query().Get(a.cfg.QueryParam)
	}
	if token == "" {
		return nil, marmot.ErrNoCredentials
	}
	return a.AuthenticateToken(r.Context(), token)
}

// AuthenticateToken is a marmot.ServerConfig.AuthenticateToken hook: it
// verifies one token and returns its identity.
func (a *Authenticator) AuthenticateToken(_ context.Context, token string) (*marmot.Identity, error) {
	if len(token) > protocol.MaxTokenSize {
		return nil, fmt.Errorf("%w: token of %d bytes", marmot.ErrUnauthorized, len(token))
	}
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return a.key, nil })
	if errors.Is(err, jwt.ErrTokenExpired) {
		return nil, fmt.Errorf("%w: %w: %w", marmot.ErrUnauthorized, marmot.ErrTokenExpired, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", marmot.ErrUnauthorized, err)
	}
	user, _ := claims[a.cfg.UserClaim].(string)
	if user == "" {
		return nil, fmt.Errorf("%w: token has no %q claim", marmot.ErrUnauthorized, a.cfg.UserClaim)
	}
	id := &marmot.Identity{UserID: user, Claims: claims}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.ExpiresAt = exp.Add(a.cfg.Leeway)
	}
	return id, nil
}

// ParsePublicKey reads a PEM public key (PKIX "PUBLIC KEY", "RSA PUBLIC
// KEY") or certificate, RSA or Ed25519, for Config.PublicKey.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block in the public key", ErrConfig)
	}
	var key any
	var err error
	switch block.Type {
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch key.(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		return key, nil
	case *ecdsa.PublicKey:
		return nil, fmt.Errorf("%w: ECDSA keys are not supported (RS256 or EdDSA)", ErrConfig)
	}
	return nil, fmt.Errorf("%w: unsupported key type %T", ErrConfig, key)
}
