package jsclient_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/crypto"
	"github.com/marmotws/marmot/internal/browsertest"
)

// echoConfig is the server the page talks to: "upper" requests get their
// payload in capitals, "fail" an error 418, everything else comes back.
func echoConfig() marmot.ServerConfig {
	return marmot.ServerConfig{
		RoomHistory: marmot.HistoryConfig{Size: 100},
		ServerEvents: marmot.ServerEvents{
			OnHandleCommand: func(m *marmot.Message) {
				switch {
				case m.IsRequest() && m.Name == "upper":
					_ = m.Reply([]byte(strings.ToUpper(string(m.Payload))))
				case m.IsRequest() && m.Name == "fail":
					_ = m.ReplyError(418, "teapot")
				case m.IsRequest() && m.Name == "silent": // never answered
				default:
					_ = m.Reply(m.Payload)
				}
			},
		},
	}
}

// helpers is evaluated in the page before a scenario: waitMsg resolves with
// the first message matching pred; waitEvent with the first event's args.
const helpers = `
window.plain = (m) => ({kind: m.kind, name: m.name, text: m.text, room: m.room, offset: m.offset});
window.waitMsg = (c, pred) => new Promise((res) => { const off = c.on('message', (m) => { if (pred(m)) { off(); res(plain(m)); } }); });
window.waitEvent = (c, ev, pred) => new Promise((res) => { const off = c.on(ev, (...a) => { if (!pred || pred(...a)) { off(); res(a); } }); });
window.waitState = (c, s) => c.state === s ? Promise.resolve([s]) : waitEvent(c, 'statechange', (o, n) => n === s);
true`

type msg struct {
	Kind, Name, Text, Room string
	Offset                 int
}

// basics runs connect, send, request (ok and error) and a broadcast on a
// page, over whichever transport the page ends up with; it returns that.
func basics(t *testing.T, s *site, p *browsertest.Page, transport string) {
	t.Helper()
	p.MustEval(helpers, nil)
	var st struct{ State, Desc, Transport string }
	p.MustEval(fmt.Sprintf(`(async () => {
		window.c = new marmot.Client({url: %q, transport: %q});
		c.on('statechange', (o, n) => { document.getElementById('state').textContent = marmot.describeState(n); });
		await c.connect();
		return {state: c.state, desc: c.stateDescription, transport: c.transport};
	})()`, s.wsURL(), transport), &st)
	if st.State != "connected" || st.Desc != "Connected to server" {
		t.Fatalf("after connect: %+v", st)
	}
	t.Logf("connected over %s", st.Transport)

	var echo msg
	p.MustEval(`(async () => { const w = waitMsg(c, (m) => m.text === 'hello'); c.send('hello'); return await w; })()`, &echo)
	if echo.Kind != "data" || echo.Text != "hello" {
		t.Fatalf("echo: %+v", echo)
	}
	var cmd msg
	p.MustEval(`(async () => { const w = waitMsg(c, (m) => m.name === 'greet'); c.sendCommand('greet', 'hi there'); return await w; })()`, &cmd)
	if cmd.Kind != "command" || cmd.Text != "hi there" {
		t.Fatalf("command echo: %+v", cmd)
	}
	var reply string
	p.MustEval(`c.request('upper', 'shout').then((m) => m.text)`, &reply)
	if reply != "SHOUT" {
		t.Fatalf("request reply %q, want SHOUT", reply)
	}
	var rerr struct {
		Name string
		Code int
		Msg  string
	}
	p.MustEval(`c.request('fail', '').then(() => ({name: 'none'}), (e) => ({name: e.name, code: e.code, msg: e.remoteMessage}))`, &rerr)
	if rerr.Name != "RemoteError" || rerr.Code != 418 || rerr.Msg != "teapot" {
		t.Fatalf("error reply: %+v", rerr)
	}

	var terr struct {
		Name    string
		Elapsed float64
	}
	p.MustEval(`(async () => { const t0 = performance.now(); try { await c.request('silent', '', {timeout: 300}); return {name: 'answered'}; } catch (e) { return {name: e.name, elapsed: performance.now() - t0}; } })()`, &terr)
	if terr.Name != "TimeoutError" || terr.Elapsed < 290 {
		t.Fatalf("unanswered request: %+v, want TimeoutError after 300 ms", terr)
	}

	p.MustEval(`window.bc = waitMsg(c, (m) => m.text === 'news for all'); true`, nil)
	if n, err := s.server().Broadcast([]byte("news for all")); err != nil || n != 1 {
		t.Fatalf("Broadcast = %d, %v", n, err)
	}
	var got msg
	p.MustEval(`bc`, &got)
	if got.Text != "news for all" {
		t.Fatalf("broadcast: %+v", got)
	}
	if cs := s.server().Clients(); len(cs) != 1 {
		t.Fatalf("server sees %d clients, want 1", len(cs))
	}
	var closed string
	p.MustEval(`(async () => { await c.disconnect(); return c.state; })()`, &closed)
	if closed != "disconnected" {
		t.Fatalf("after disconnect: %s", closed)
	}
}

func TestBrowserWebSocket(t *testing.T) {
	b := browsertest.New(t)
	s := newSite(t, echoConfig())
	p := s.open(b, "")
	basics(t, s, p, "websocket")
	p.Screenshot("client-websocket.png")
}

// TestBrowserHTTPFallbackNoWebSocket: a page without WebSocket falls back
// to the HTTP transport (docs/HTTP.md) and does all the same.
func TestBrowserHTTPFallbackNoWebSocket(t *testing.T) {
	s := newSite(t, echoConfig())
	needHTTP(t, s, "http")
	b := browsertest.New(t)
	p := s.open(b, "?nows")
	var hasWS bool
	p.MustEval(`typeof WebSocket === 'function'`, &hasWS)
	if hasWS {
		t.Fatal("the page still has WebSocket")
	}
	basics(t, s, p, "auto")
}

// TestBrowserHTTPFallbackStrippedUpgrade: a proxy that strips the upgrade
// headers makes the WebSocket fail; "auto" falls back to HTTP.
func TestBrowserHTTPFallbackStrippedUpgrade(t *testing.T) {
	s := newSite(t, echoConfig())
	needHTTP(t, s, "http")
	b := browsertest.New(t)
	strip := func(w http.ResponseWriter, r *http.Request) bool {
		r.Header.Del("Upgrade")
		r.Header.Del("Connection")
		return false
	}
	s.wrap.Store(&strip)
	p := s.open(b, "")
	basics(t, s, p, "auto")
}

// TestBrowserServesScript: the server itself serves marmot.js and
// marmot.d.ts under its path, and nothing else there.
func TestBrowserServesScript(t *testing.T) {
	s := newSite(t, echoConfig())
	for path, ctype := range map[string]string{"/websocket/marmot.js": "text/javascript", "/websocket/marmot.d.ts": "application/typescript"} {
		res, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) || res.ContentLength <= 1000 {
			t.Fatalf("GET %s: %d %q %d bytes", path, res.StatusCode, res.Header.Get("Content-Type"), res.ContentLength)
		}
	}
	res, err := http.Post(s.url+"/websocket/marmot.js", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST marmot.js: %d, want 405", res.StatusCode)
	}
}

// refuse makes the endpoint answer 503 while on is set (a server that is
// down), so that a test can act while the page waits to reconnect.
func refuse(s *site) func(on bool) {
	var down func(w http.ResponseWriter, r *http.Request) bool = func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	}
	return func(on bool) {
		if on {
			s.wrap.Store(&down)
		} else {
			s.wrap.Store(nil)
		}
	}
}

// TestBrowserRoomsRecover: a page joins a room, receives its messages with
// offsets, loses its connection, and after the reconnect recovers exactly
// what was published meanwhile.
func TestBrowserRoomsRecover(t *testing.T) {
	b := browsertest.New(t)
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) { roomsRecover(t, b, transport) })
	}
}

// needHTTP skips t while the server has no HTTP fallback transport.
func needHTTP(t *testing.T, s *site, transport string) {
	if transport != "http" {
		return
	}
	if ok, why := s.httpFallbackAvailable(); !ok {
		t.Skipf("the HTTP fallback transport is not on this server yet (branch http): %s", why)
	}
}

func roomsRecover(t *testing.T, b *browsertest.Browser, transport string) {
	s := newSite(t, echoConfig())
	needHTTP(t, s, transport)
	p := s.open(b, "")
	p.MustEval(helpers, nil)
	var join struct {
		Epoch  string
		Offset int
	}
	p.MustEval(fmt.Sprintf(`(async () => {
		window.c = new marmot.Client({url: %q, transport: %q, autoReconnect: true, reconnectInterval: 200, reconnectJitter: 0});
		window.roomMsgs = [];
		c.on('message', (m) => { if (m.room) roomMsgs.push(plain(m)); });
		await c.connect();
		if (c.transport !== %[2]q) throw new Error('connected over ' + c.transport);
		return await c.join('lobby');
	})()`, s.wsURL(), transport), &join)
	if join.Epoch == "" {
		t.Fatalf("join result %+v: no epoch", join)
	}
	p.MustEval(`(async () => { await c.publish('lobby', 'one'); return true; })()`, nil)
	if _, err := s.server().Publish("lobby", []byte("two")); err != nil {
		t.Fatal(err)
	}
	p.WaitFor(`roomMsgs.length === 2`)

	setDown := refuse(s)
	setDown(true)
	p.MustEval(`window.lost = waitState(c, 'reconnecting'); window.rec = waitEvent(c, 'recover'); true`, nil)
	id := s.server().Clients()[0].ID
	if err := s.server().Disconnect(id, 1001, "test"); err != nil {
		t.Fatal(err)
	}
	p.MustEval(`lost`, nil)
	for i := 3; i <= 5; i++ {
		if _, err := s.server().Publish("lobby", fmt.Appendf(nil, "missed %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	setDown(false)
	var rec []any
	p.MustEval(`rec`, &rec)
	if len(rec) != 4 || rec[0] != "lobby" || rec[1] != true || rec[2] != float64(3) {
		t.Fatalf("recover event %v, want [lobby true 3 \"\"]", rec)
	}
	p.WaitFor(`roomMsgs.length === 5`)
	var msgs []msg
	p.MustEval(`roomMsgs`, &msgs)
	for i, m := range msgs {
		if m.Offset != join.Offset+i+1 || m.Room != "lobby" {
			t.Fatalf("message %d: %+v (join offset %d)", i, m, join.Offset)
		}
	}
	if msgs[2].Text != "missed 3" || msgs[4].Text != "missed 5" {
		t.Fatalf("recovered %+v", msgs)
	}
	p.MustEval(`c.disconnect().then(() => true)`, nil)
}

// TestBrowserReconnectAfterRestart: the server stops (1001) and a new one
// starts on the same address; the page reconnects by itself.
func TestBrowserReconnectAfterRestart(t *testing.T) {
	b := browsertest.New(t)
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) { reconnectAfterRestart(t, b, transport) })
	}
}

func reconnectAfterRestart(t *testing.T, b *browsertest.Browser, transport string) {
	s := newSite(t, echoConfig())
	needHTTP(t, s, transport)
	p := s.open(b, "")
	p.MustEval(helpers, nil)
	p.MustEval(fmt.Sprintf(`(async () => {
		window.c = new marmot.Client({url: %q, transport: %q, autoReconnect: true, reconnectStrategy: 'exponential', reconnectInterval: 100, maxReconnectInterval: 400});
		window.attempts = [];
		c.on('reconnecting', (n, d) => attempts.push([n, d]));
		await c.connect();
		window.lost = waitState(c, 'reconnecting');
		return true;
	})()`, s.wsURL(), transport), nil)
	s.stop()
	p.MustEval(`lost`, nil)
	p.WaitFor(`attempts.length >= 2`) // the 503s while no server runs
	p.MustEval(`window.back = waitEvent(c, 'connect'); true`, nil)
	s.start()
	p.MustEval(`back`, nil)
	var reply string
	p.MustEval(`c.request('upper', 'again').then((m) => m.text)`, &reply)
	if reply != "AGAIN" {
		t.Fatalf("after restart: %q", reply)
	}
	var attempts [][2]float64
	p.MustEval(`attempts`, &attempts)
	for i, a := range attempts {
		want := min(100*float64(int(1)<<i), 400)
		if a[0] != float64(i+1) || a[1] < want*0.85 || a[1] > want*1.15 {
			t.Fatalf("attempt %d: %v, want delay %v ±10%%", i+1, a, want)
		}
	}
	p.MustEval(`c.disconnect().then(() => true)`, nil)
}

// TestBrowserEncrypted: the secure profile from the page through WebCrypto,
// in every mode and key size WebCrypto has, against the Go server.
func TestBrowserEncrypted(t *testing.T) {
	b := browsertest.New(t)
	for _, mode := range []string{"gcm", "cbc", "ctr", "cfb", "ofb"} {
		for _, size := range []int{128, 256} {
			t.Run(fmt.Sprintf("%s-%d", mode, size), func(t *testing.T) {
				cfg := echoConfig()
				cfg.EncryptionConfig = marmot.EncryptionConfig{
					EncryptionEnabled: true, EncryptionKey: "browser secret", EncryptionMode: mode, EncryptionKeySize: size,
					EncryptionKDF: crypto.KDFParams{Algorithm: crypto.KDFPBKDF2SHA256, Iterations: 100_000},
				}
				s := newSite(t, cfg)
				p := s.open(b, "")
				p.MustEval(helpers, nil)
				var r struct {
					Mode, Reply, Echo string
					Encrypted         bool
				}
				p.MustEval(fmt.Sprintf(`(async () => {
					const c = new marmot.Client({url: %q, encryption: {key: 'browser secret', mode: %q, keySize: %d}});
					const wires = [];
					c.on('data', (d) => wires.push(d));
					await c.connect();
					const reply = (await c.request('upper', 'secret text')).text;
					const long = 'abcdefghijklmnopq'.repeat(61) + 'é'; // 1039 bytes: 64 blocks and a tail
					const longReply = (await c.request('upper', long)).text;
					if (longReply !== long.toUpperCase()) throw new Error('long reply differs: ' + longReply.length);
					const empty = (await c.request('upper', '')).text;
					if (empty !== '') throw new Error('empty reply: ' + empty);
					const w = waitMsg(c, (m) => m.text === 'échoé ✓');
					c.send('échoé ✓');
					const echo = (await w).text;
					const encrypted = wires.every((d) => d instanceof Uint8Array && d[0] === 0x4d && d[1] === 0x52);
					await c.disconnect();
					return {mode: c.encryptionMode, reply, echo, encrypted};
				})()`, s.wsURL(), mode, size), &r)
				if r.Mode != fmt.Sprintf("%s/%d", mode, size) || r.Reply != "SECRET TEXT" || r.Echo != "échoé ✓" || !r.Encrypted {
					t.Fatalf("%+v", r)
				}
			})
		}
	}
}

// TestBrowserEncryptedHTTP: the secure profile over the HTTP transport.
func TestBrowserEncryptedHTTP(t *testing.T) {
	cfg := echoConfig()
	cfg.EncryptionConfig = marmot.EncryptionConfig{
		EncryptionEnabled: true, EncryptionKey: "browser secret", EncryptionMode: "gcm",
		EncryptionKDF: crypto.KDFParams{Algorithm: crypto.KDFPBKDF2SHA256, Iterations: 100_000},
	}
	s := newSite(t, cfg)
	needHTTP(t, s, "http")
	b := browsertest.New(t)
	p := s.open(b, "?nows")
	var r struct{ Transport, Mode, Reply string }
	p.MustEval(fmt.Sprintf(`(async () => {
		const c = new marmot.Client({url: %q, encryption: {key: 'browser secret'}});
		await c.connect();
		const reply = (await c.request('upper', 'over http')).text;
		await c.disconnect();
		return {transport: c.transport, mode: c.encryptionMode, reply};
	})()`, s.wsURL()), &r)
	if r.Transport != "http" || r.Mode != "gcm/256" || r.Reply != "OVER HTTP" {
		t.Fatalf("%+v", r)
	}
}

// TestBrowserEncryptionRefusals: a wrong passphrase fails the handshake,
// and so does a mismatch of encryption with the server, with an
// EncryptionError; the client does not retry.
func TestBrowserEncryptionRefusals(t *testing.T) {
	b := browsertest.New(t)
	cfg := echoConfig()
	cfg.EncryptionConfig = marmot.EncryptionConfig{
		EncryptionEnabled: true, EncryptionKey: "right", EncryptionMode: "gcm",
		EncryptionKDF: crypto.KDFParams{Algorithm: crypto.KDFPBKDF2SHA256, Iterations: 100_000},
	}
	s := newSite(t, cfg)
	p := s.open(b, "")
	var r struct{ Name, Msg, State string }
	p.MustEval(fmt.Sprintf(`(async () => {
		const c = new marmot.Client({url: %q, autoReconnect: true, retryFirstConnect: true, encryption: {key: 'wrong', mode: 'gcm'}});
		try { await c.connect(); return {name: 'connected'}; } catch (e) { return {name: e.name, msg: e.message, state: c.state}; }
	})()`, s.wsURL()), &r)
	if r.Name != "EncryptionError" || !strings.Contains(r.Msg, "wrong key") || r.State != "error" {
		t.Fatalf("%+v", r)
	}
	// A browser cannot read the 400 that refuses a WebSocket upgrade; in
	// "auto" the HTTP open gets the same refusal, with its reason.
	plain := newSite(t, echoConfig())
	pp := plain.open(b, "")
	for _, c := range []struct {
		page           *browsertest.Page
		url, enc, want string
	}{
		{pp, plain.wsURL(), "{key: 'k'}", "server does not encrypt"},
		{p, s.wsURL(), "null", "server requires encryption"},
	} {
		var r struct{ Name, Msg, State string }
		c.page.MustEval(fmt.Sprintf(`(async () => {
			const c = new marmot.Client({url: %q, autoReconnect: true, retryFirstConnect: true, encryption: %s});
			try { await c.connect(); return {name: 'connected'}; } catch (e) { return {name: e.name, msg: e.message, state: c.state}; }
		})()`, c.url, c.enc), &r)
		if r.Name != "EncryptionError" || !strings.Contains(r.Msg, c.want) || r.State != "error" {
			t.Fatalf("%s: %+v", c.want, r)
		}
	}

	var modeErr string
	p.MustEval(`(() => { try { new marmot.Client({encryption: {key: 'k', mode: 'ctc'}}); return ''; } catch (e) { return e.name + ': ' + e.message; } })()`, &modeErr)
	if !strings.Contains(modeErr, "EncryptionError") || !strings.Contains(modeErr, "ctc") {
		t.Fatalf("ctc in a browser: %q", modeErr)
	}
}

// TestBrowserPresence: in a room with presence, a page lists the members
// and is told when another client joins and leaves.
func TestBrowserPresence(t *testing.T) {
	cfg := echoConfig()
	cfg.RoomPresence = func(room string) bool { return room == "chat" }
	s := newSite(t, cfg)
	b := browsertest.New(t)
	p := s.open(b, "")
	p.MustEval(helpers, nil)
	var r struct {
		Before, After []int
		Joined, Left  []any
		Refused       string
	}
	p.MustEval(fmt.Sprintf(`(async () => {
		const a = new marmot.Client({url: %[1]q}), b = new marmot.Client({url: %[1]q});
		await a.connect();
		await b.connect();
		await a.join('chat');
		const before = await a.presence('chat');
		const joined = waitEvent(a, 'presence', (room, id, j) => j);
		await b.join('chat');
		const j = await joined;
		const after = await a.presence('chat');
		const left = waitEvent(a, 'presence', (room, id, j) => !j);
		await b.leave('chat');
		const l = await left;
		const refused = await a.presence('lobby').then(() => 'listed', (e) => e.name + ' ' + e.code);
		await a.disconnect();
		await b.disconnect();
		return {before, after, joined: j, left: l, refused};
	})()`, s.wsURL()), &r)
	if len(r.Before) != 1 || len(r.After) != 2 || r.Joined[0] != "chat" || r.Joined[2] != true || r.Left[2] != false ||
		r.Joined[1] != float64(r.After[1]) || r.Refused != "RemoteError 403" {
		t.Fatalf("%+v", r)
	}
}
