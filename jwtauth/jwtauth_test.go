package jwtauth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/jwtauth"
	"github.com/marmotws/marmot/protocol"
)

const waitTimeout = 20 * time.Second

var secret = []byte("0123456789abcdef0123456789abcdef")

func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hour() int64 { return time.Now().Add(time.Hour).Unix() }

func TestAlgorithms(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPub, err := jwtauth.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}))
	if err != nil {
		t.Fatal(err)
	}
	edDER, _ := x509.MarshalPKIXPublicKey(edPub)
	edParsed, err := jwtauth.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edDER}))
	if err != nil {
		t.Fatal(err)
	}
	claims := func() jwt.MapClaims { return jwt.MapClaims{"sub": "u1", "exp": hour(), "role": "admin"} }
	for _, tc := range []struct {
		name   string
		cfg    jwtauth.Config
		good   string
		forged []string
	}{
		{"HS256", jwtauth.Config{Secret: secret}, sign(t, jwt.SigningMethodHS256, secret, claims()), []string{
			sign(t, jwt.SigningMethodHS256, []byte("another secret of 32 bytes......"), claims()),
			sign(t, jwt.SigningMethodHS384, secret, claims()),
			sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims()),
		}},
		{"RS256", jwtauth.Config{PublicKey: rsaPub}, sign(t, jwt.SigningMethodRS256, rsaKey, claims()), []string{
			// The classic confusion: HS256 keyed with the public key.
			sign(t, jwt.SigningMethodHS256, rsaDER, claims()),
			sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims()),
		}},
		{"EdDSA", jwtauth.Config{PublicKey: edParsed}, sign(t, jwt.SigningMethodEdDSA, edPriv, claims()), []string{
			sign(t, jwt.SigningMethodHS256, []byte(edPub), claims()),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := jwtauth.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, err := a.AuthenticateToken(context.Background(), tc.good)
			if err != nil || id.UserID != "u1" || id.Claims["role"] != "admin" || id.ExpiresAt.IsZero() {
				t.Fatalf("good token: %+v, %v", id, err)
			}
			for i, f := range tc.forged {
				if _, err := a.AuthenticateToken(context.Background(), f); !errors.Is(err, marmot.ErrUnauthorized) {
					t.Fatalf("forged token %d accepted: %v", i, err)
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	a, err := jwtauth.New(jwtauth.Config{Secret: secret, Issuer: "me", Audience: "marmot"})
	if err != nil {
		t.Fatal(err)
	}
	ok := jwt.MapClaims{"sub": "u", "iss": "me", "aud": "marmot", "exp": hour()}
	if _, err := a.AuthenticateToken(context.Background(), sign(t, jwt.SigningMethodHS256, secret, ok)); err != nil {
		t.Fatal(err)
	}
	expired := jwt.MapClaims{"sub": "u", "iss": "me", "aud": "marmot", "exp": time.Now().Add(-time.Minute).Unix()}
	_, err = a.AuthenticateToken(context.Background(), sign(t, jwt.SigningMethodHS256, secret, expired))
	if !errors.Is(err, marmot.ErrUnauthorized) || !errors.Is(err, marmot.ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	for name, c := range map[string]jwt.MapClaims{
		"issuer":   {"sub": "u", "iss": "them", "aud": "marmot", "exp": hour()},
		"audience": {"sub": "u", "iss": "me", "aud": "other", "exp": hour()},
		"no sub":   {"iss": "me", "aud": "marmot", "exp": hour()},
		"future":   {"sub": "u", "iss": "me", "aud": "marmot", "nbf": hour()},
	} {
		if _, err := a.AuthenticateToken(context.Background(), sign(t, jwt.SigningMethodHS256, secret, c)); !errors.Is(err, marmot.ErrUnauthorized) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := a.AuthenticateToken(context.Background(), "garbage"); !errors.Is(err, marmot.ErrUnauthorized) {
		t.Fatal(err)
	}
	for _, bad := range []jwtauth.Config{{}, {Secret: []byte("short")}, {Secret: secret, PublicKey: ed25519.PublicKey(make([]byte, 32))}, {PublicKey: "nope"}} {
		if _, err := jwtauth.New(bad); !errors.Is(err, jwtauth.ErrConfig) {
			t.Fatalf("New(%+v): %v", bad, err)
		}
	}
	required, _ := jwtauth.New(jwtauth.Config{Secret: secret, RequireExpiry: true})
	if _, err := required.AuthenticateToken(context.Background(), sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u"})); !errors.Is(err, marmot.ErrUnauthorized) {
		t.Fatalf("no exp with RequireExpiry: %v", err)
	}
}

func TestFromRequest(t *testing.T) {
	a, _ := jwtauth.New(jwtauth.Config{Secret: secret})
	tok := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "h"})
	r := httptest.NewRequest("GET", "/ws", nil)
	if _, err := a.Authenticate(r); !errors.Is(err, marmot.ErrNoCredentials) {
		t.Fatalf("no token: %v", err)
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	if id, err := a.Authenticate(r); err != nil || id.UserID != "h" {
		t.Fatalf("header: %+v %v", id, err)
	}
	r.Header.Set("Authorization", "Basic "+tok)
	if _, err := a.Authenticate(r); !errors.Is(err, marmot.ErrUnauthorized) || errors.Is(err, marmot.ErrNoCredentials) {
		t.Fatalf("Basic: %v", err)
	}
	q := httptest.NewRequest("GET", "/ws?token="+tok, nil)
	if id, err := a.Authenticate(q); err != nil || id.UserID != "h" {
		t.Fatalf("query: %+v %v", id, err)
	}
	off, _ := jwtauth.New(jwtauth.Config{Secret: secret, QueryParam: "-"})
	if _, err := off.Authenticate(q); !errors.Is(err, marmot.ErrNoCredentials) {
		t.Fatalf("query off: %v", err)
	}
}

func startServer(t *testing.T, a *jwtauth.Authenticator, events marmot.ServerEvents) *marmot.Server {
	t.Helper()
	cfg := marmot.ServerConfig{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), ServerEvents: events}
	a.Apply(&cfg)
	s, err := marmot.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

func newClient(t *testing.T, cfg marmot.ClientConfig) *marmot.Client {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := marmot.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestOverSockets: a header token, a query token, a first-message token
// and a refused one, against a real server; then expiry on a live
// connection (4001) and the client's refresh.
func TestOverSockets(t *testing.T) {
	a, _ := jwtauth.New(jwtauth.Config{Secret: secret})
	closed := make(chan *marmot.CloseError, 4)
	srv := startServer(t, a, marmot.ServerEvents{
		OnHandleCommand:      func(m *marmot.Message) { _ = m.Reply([]byte(m.Identity.UserID)) },
		OnClientDisconnected: func(_ marmot.ClientInfo, r *marmot.CloseError) { closed <- r },
	})
	good := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "ann", "exp": hour()})
	for _, inMessage := range []bool{false, true} {
		c := newClient(t, marmot.ClientConfig{URL: srv.URL(), Subprotocol: protocol.SubprotocolBinary, TokenInMessage: inMessage,
			Token: func(context.Context) (string, error) { return good, nil }})
		if err := c.Connect(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
		if who, err := c.Request(ctxTimeout(t), "whoami", nil); err != nil || string(who) != "ann" {
			t.Fatalf("whoami (in message %v) = %q %v", inMessage, who, err)
		}
	}
	ws, _, err := websocket.DefaultDialer.Dial(srv.URL()+"?token="+good, nil)
	if err != nil {
		t.Fatalf("query token: %v", err)
	}
	ws.Close()
	forged := sign(t, jwt.SigningMethodHS256, []byte("another secret of 32 bytes......"), jwt.MapClaims{"sub": "eve"})
	_, resp, err := websocket.DefaultDialer.Dial(srv.URL(), http.Header{"Authorization": {"Bearer " + forged}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged token: %v %v, want 401", resp, err)
	}
	resp.Body.Close()

	// A token that expires in a second: closed with 4001, reconnected
	// with a fresh token from the refresh callback.
	var issued atomic.Int32
	connects := make(chan struct{}, 4)
	c := newClient(t, marmot.ClientConfig{
		URL: srv.URL(), AutoReconnect: true, ReconnectInterval: 10 * time.Millisecond, ReconnectJitter: -1,
		Token: func(context.Context) (string, error) {
			exp := time.Now().Add(time.Hour)
			if issued.Add(1) == 1 {
				exp = time.Now().Add(time.Second)
			}
			return sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "short", "exp": exp.Unix()}), nil
		},
		ClientEvents: marmot.ClientEvents{OnConnect: func() { connects <- struct{}{} }},
	})
	if err := c.Connect(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	<-connects
	deadline := time.After(waitTimeout)
	for {
		select {
		case r := <-closed:
			if r.Code != marmot.CloseTokenExpired {
				continue // the earlier clients' closes
			}
		case <-deadline:
			t.Fatal("no 4001 close")
		}
		break
	}
	select {
	case <-connects:
	case <-time.After(waitTimeout):
		t.Fatal("no reconnect after 4001")
	}
	if issued.Load() != 2 {
		t.Fatalf("Token called %d times, want 2", issued.Load())
	}
	if n := srv.Stats().ExpiredCloses; n != 1 {
		t.Fatalf("ExpiredCloses = %d", n)
	}
}
