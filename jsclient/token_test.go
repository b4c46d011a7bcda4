package jsclient_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/internal/browsertest"
	"github.com/marmotws/marmot/jwtauth"
)

// TestBrowserToken: marmot.js's token option. The page's token function is
// asked before every connection attempt: its first token expires, the
// server closes with 4001, and the reconnect carries the second one; over
// the HTTP transport the open carries it too; without a token the connect
// is closed with 4503 and does not come back.
func TestBrowserToken(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	auth, err := jwtauth.New(jwtauth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(sub string, ttl time.Duration) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix()}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	users := make(chan string, 8)
	cfg := echoConfig()
	auth.Apply(&cfg)
	cfg.ServerEvents.OnClientConnected = func(ci marmot.ClientInfo) {
		if ci.Identity != nil {
			users <- ci.Identity.UserID + " " + ci.Transport
		}
	}
	s := newSite(t, cfg)
	b := browsertest.New(t)
	p := s.open(b, "")
	p.MustEval(helpers, nil)
	next := func(want string) {
		t.Helper()
		select {
		case got := <-users:
			if got != want {
				t.Fatalf("server saw %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no connection as %q within 30 s", want)
		}
	}

	// Expires in 2 s; exp has whole seconds, so the server closes within 3.
	p.MustEval(fmt.Sprintf(`(async () => {
		const tokens = [%q, %q];
		let asked = 0;
		window.asked = () => asked;
		window.c = new marmot.Client({url: %q, transport: 'websocket', autoReconnect: true, reconnectInterval: 200,
			token: async () => tokens[Math.min(asked++, tokens.length - 1)]});
		window.gone = waitEvent(c, 'disconnect');
		await c.connect();
		return true;
	})()`, mint("alice", 2*time.Second), mint("alice-2", time.Hour), s.wsURL()), nil)
	next("alice websocket")
	var code int
	p.MustEval(`gone.then((a) => a[0].code)`, &code)
	if code != 4001 {
		t.Fatalf("the expired connection closed with %d, want 4001", code)
	}
	next("alice-2 websocket")
	var st struct {
		State string
		Asked int
	}
	p.MustEval(`(async () => { await waitState(c, 'connected'); const r = await c.request('upper', 'ok'); return {state: c.state + ' ' + r.text, asked: asked()}; })()`, &st)
	if st.State != "connected OK" || st.Asked != 2 {
		t.Fatalf("after the refresh: %+v, want connected OK with the token function asked twice", st)
	}
	p.MustEval(`c.disconnect().then(() => true)`, nil)

	p.MustEval(fmt.Sprintf(`(async () => {
		window.h = new marmot.Client({url: %q, transport: 'http', token: () => %q});
		await h.connect();
		const r = await h.request('upper', 'http');
		await h.disconnect();
		return r.text;
	})()`, s.wsURL(), mint("bob", time.Hour)), nil)
	next("bob http")

	// Without a token the upgrade is let in for a first-message token
	// (jwtauth sets AuthenticateToken too); none comes, so the server closes
	// with 4503 after AuthTimeout, and the client does not come back.
	var refused int
	p.MustEval(fmt.Sprintf(`(async () => {
		const n = new marmot.Client({url: %q, autoReconnect: true, reconnectInterval: 200});
		const gone = waitEvent(n, 'disconnect');
		await n.connect();
		const code = (await gone)[0].code;
		await waitState(n, 'disconnected');
		return code;
	})()`, s.wsURL()), &refused)
	if refused != 4503 {
		t.Fatalf("without a token: closed with %d, want 4503", refused)
	}
}
