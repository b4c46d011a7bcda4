package jsclient_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/marmotws/marmot/internal/browsertest"
	"github.com/marmotws/marmot/jsclient"
	"github.com/marmotws/marmot/protocol"
)

// TestBrowserCodecs: marmot.js's JSON and binary envelope codecs agree byte
// for byte with the Go protocol package, both ways, on PROTOCOL.md's
// examples and awkward payloads.
func TestBrowserCodecs(t *testing.T) {
	envs := []protocol.Envelope{
		{Kind: protocol.KindData, Payload: []byte("hi")},
		{Kind: protocol.KindData},
		{Kind: protocol.KindData, Name: "chat", Payload: []byte{0xff, 0x00}},
		{Kind: protocol.KindCommand, Name: "ping"},
		{Kind: protocol.KindRequest, ID: 7, Name: "sum", Payload: []byte("[1,2]")},
		{Kind: protocol.KindReply, ID: 7, Payload: []byte("3")},
		{Kind: protocol.KindError, ID: 7, Code: 404, Payload: []byte("no such command")},
		{Kind: protocol.KindRequest, ID: 300, Name: "sum", Meta: map[string]string{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "rojo=00f067aa0ba902b7"}, Payload: []byte("[1,2]")},
		{Kind: protocol.KindError, ID: 1 << 40, Code: 4294967295, Meta: map[string]string{"traceparent": "x"}, Payload: []byte("boom")},
		{Kind: protocol.KindData, Name: "é/\"", Payload: []byte("a\"b\\c\n\r\t\b\f\x01\x1f€\u2028\x7f")},
		{Kind: protocol.KindData, Room: "chat", Offset: 42, Payload: []byte("hi")},
		{Kind: protocol.KindCommand, Name: "move", Room: "game", Offset: 300, Payload: []byte("e2e4")},
		{Kind: protocol.KindRequest, ID: 2, Name: "marmot.join", Room: "chat", Offset: 42, Epoch: "e1"},
		{Kind: protocol.KindData, Payload: []byte("😀 \xe2\x82")}, // invalid UTF-8: payload_b64
		{Kind: protocol.KindData, Meta: map[string]string{"b": "2", "a": "1", "é": "3", "Z": ""}, Payload: []byte("meta order")},
	}
	type vec struct{ JSON, Bin string }
	var vecs []vec
	for i := range envs {
		j, err := protocol.JSON.Append(nil, &envs[i])
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		b, err := protocol.Binary.Append(nil, &envs[i])
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		vecs = append(vecs, vec{string(j), hex.EncodeToString(b)})
	}
	in, _ := json.Marshal(vecs)

	b := browsertest.New(t)
	s := newSite(t, echoConfig())
	p := s.open(b, "")
	var fails []string
	p.MustEval(fmt.Sprintf(`(() => {
		const {encodeJSON, decodeJSON, encodeBinary, decodeBinary} = marmot._internal;
		const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
		const unhex = (s) => Uint8Array.from(s.match(/../g) || [], (h) => parseInt(h, 16));
		const fails = [];
		%s.forEach((v, i) => {
			const fromJSON = decodeJSON(v.JSON), fromBin = decodeBinary(unhex(v.Bin));
			const checks = {
				'json→json': encodeJSON(fromJSON), 'bin→json': encodeJSON(fromBin),
				'bin→bin': hex(encodeBinary(fromBin)), 'json→bin': hex(encodeBinary(fromJSON)),
			};
			for (const [k, got] of Object.entries(checks)) {
				const want = k.endsWith('json') ? v.JSON : v.Bin;
				if (got !== want) fails.push(i + ' ' + k + ': ' + got + ' != ' + want);
			}
		});
		return fails;
	})()`, in), &fails)
	for _, f := range fails {
		t.Error(f)
	}
}

// TestDocumentedSize: docs/BROWSER.md and PERFORMANCE.md state marmot.js's
// size; keep them true.
func TestDocumentedSize(t *testing.T) {
	n := len(jsclient.Script)
	want := fmt.Sprintf("%d,%03d bytes", n/1000, n%1000)
	for _, f := range []string{"../docs/BROWSER.md", "../docs/PERFORMANCE.md"} {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), want) {
			t.Errorf("%s does not say marmot.js is %s", f, want)
		}
	}
}
