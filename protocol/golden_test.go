package protocol

import (
	"bytes"
	"encoding/hex"
	"maps"
	"strings"
	"testing"
)

const (
	traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tracestate  = "rojo=00f067aa0ba902b7"
)

// golden holds the test vectors published in docs/PROTOCOL.md. Changing a
// vector here means changing the wire format: update the document too.
var golden = []struct {
	name string
	env  Envelope
	bin  string // hex; spaces separate fields and are ignored
	json string
}{
	{
		name: "data",
		env:  Envelope{Kind: KindData, Payload: []byte("hi")},
		bin:  "01 01 00 6869",
		json: `{"v":1,"kind":"data","payload":"hi"}`,
	},
	{
		name: "data-empty",
		env:  Envelope{Kind: KindData},
		bin:  "01 01 00",
		json: `{"v":1,"kind":"data"}`,
	},
	{
		name: "data-named-binary",
		env:  Envelope{Kind: KindData, Name: "chat", Payload: []byte{0xff, 0x00}},
		bin:  "01 01 02 04 63686174 ff00",
		json: `{"v":1,"kind":"data","name":"chat","payload_b64":"/wA="}`,
	},
	{
		name: "command",
		env:  Envelope{Kind: KindCommand, Name: "ping"},
		bin:  "01 02 02 04 70696e67",
		json: `{"v":1,"kind":"command","name":"ping"}`,
	},
	{
		name: "request",
		env:  Envelope{Kind: KindRequest, ID: 7, Name: "sum", Payload: []byte("[1,2]")},
		bin:  "01 03 03 07 03 73756d 5b312c325d",
		json: `{"v":1,"kind":"request","id":7,"name":"sum","payload":"[1,2]"}`,
	},
	{
		name: "reply",
		env:  Envelope{Kind: KindReply, ID: 7, Payload: []byte("3")},
		bin:  "01 04 01 07 33",
		json: `{"v":1,"kind":"reply","id":7,"payload":"3"}`,
	},
	{
		name: "error",
		env:  Envelope{Kind: KindError, ID: 7, Code: 404, Payload: []byte("no such command")},
		bin:  "01 05 09 07 9403 6e6f207375636820636f6d6d616e64",
		json: `{"v":1,"kind":"error","id":7,"code":404,"payload":"no such command"}`,
	},
	{
		name: "request-traced",
		env: Envelope{
			Kind: KindRequest, ID: 300, Name: "sum",
			Meta:    map[string]string{"traceparent": traceparent, "tracestate": tracestate},
			Payload: []byte("[1,2]"),
		},
		bin: "01 03 07 ac02 03 73756d 02" +
			" 0b 7472616365706172656e74" +
			" 37 30302d34626639326633353737623334646136613363653932396430653065343733362d303066303637616130626139303262372d3031" +
			" 0a 74726163657374617465" +
			" 15 726f6a6f3d30306630363761613062613930326237" +
			" 5b312c325d",
		json: `{"v":1,"kind":"request","id":300,"name":"sum","meta":{"traceparent":"` + traceparent +
			`","tracestate":"` + tracestate + `"},"payload":"[1,2]"}`,
	},
	{
		name: "error-traced",
		env: Envelope{
			Kind: KindError, ID: 1 << 40, Code: 4294967295,
			Meta:    map[string]string{"traceparent": traceparent},
			Payload: []byte("boom"),
		},
		bin: "01 05 0d 808080808020 ffffffff0f 01" +
			" 0b 7472616365706172656e74" +
			" 37 30302d34626639326633353737623334646136613363653932396430653065343733362d303066303637616130626139303262372d3031" +
			" 626f6f6d",
		json: `{"v":1,"kind":"error","id":1099511627776,"code":4294967295,"meta":{"traceparent":"` + traceparent +
			`"},"payload":"boom"}`,
	},
	{
		name: "data-escapes",
		env:  Envelope{Kind: KindData, Name: "é/\"", Payload: []byte("a\"b\\c\n\r\t\b\f\x01\x1f€")},
		bin:  "01 01 02 04 c3a92f22 6122625c630a0d09080c011fe282ac",
		json: `{"v":1,"kind":"data","name":"é/\"","payload":"a\"b\\c\n\r\t\b\f\u0001\u001f€"}`,
	},
	{
		name: "room-data",
		env:  Envelope{Kind: KindData, Room: "chat", Offset: 42, Payload: []byte("hi")},
		bin:  "01 01 30 04 63686174 2a 6869",
		json: `{"v":1,"kind":"data","room":"chat","offset":42,"payload":"hi"}`,
	},
	{
		name: "room-command",
		env:  Envelope{Kind: KindCommand, Name: "move", Room: "game", Offset: 300, Payload: []byte("e2e4")},
		bin:  "01 02 32 04 6d6f7665 04 67616d65 ac02 65326534",
		json: `{"v":1,"kind":"command","name":"move","room":"game","offset":300,"payload":"e2e4"}`,
	},
	{
		name: "room-join",
		env:  Envelope{Kind: KindRequest, ID: 1, Name: RequestJoin, Room: "chat"},
		bin:  "01 03 13 01 0b 6d61726d6f742e6a6f696e 04 63686174",
		json: `{"v":1,"kind":"request","id":1,"name":"marmot.join","room":"chat"}`,
	},
	{
		name: "room-recover",
		env:  Envelope{Kind: KindRequest, ID: 2, Name: RequestJoin, Room: "chat", Offset: 42, Epoch: "e1"},
		bin:  "01 03 73 02 0b 6d61726d6f742e6a6f696e 04 63686174 2a 02 6531",
		json: `{"v":1,"kind":"request","id":2,"name":"marmot.join","room":"chat","offset":42,"epoch":"e1"}`,
	},
	{
		name: "room-presence",
		env:  Envelope{Kind: KindRequest, ID: 3, Name: RequestPresence, Room: "chat"},
		bin:  "01 03 13 03 0f 6d61726d6f742e70726573656e6365 04 63686174",
		json: `{"v":1,"kind":"request","id":3,"name":"marmot.presence","room":"chat"}`,
	},
	{
		name: "room-presence-event",
		env:  Envelope{Kind: KindCommand, Name: CommandPresence, Room: "chat", Payload: []byte(`{"event":"join","client":7}`)},
		bin:  "01 02 12 0f 6d61726d6f742e70726573656e6365 04 63686174 7b226576656e74223a226a6f696e222c22636c69656e74223a377d",
		json: `{"v":1,"kind":"command","name":"marmot.presence","room":"chat","payload":"{\"event\":\"join\",\"client\":7}"}`,
	},
	{
		name: "seq-command",
		env:  Envelope{Kind: KindCommand, Name: "chat", Seq: 300, Payload: []byte("hi")},
		bin:  "01 02 82 04 63686174 01 ac02 6869",
		json: `{"v":1,"kind":"command","name":"chat","seq":300,"payload":"hi"}`,
	},
	{
		name: "seq-request",
		env:  Envelope{Kind: KindRequest, ID: 9, Name: "sum", Seq: 5, Payload: []byte("[1,2]")},
		bin:  "01 03 83 09 03 73756d 01 05 5b312c325d",
		json: `{"v":1,"kind":"request","id":9,"name":"sum","seq":5,"payload":"[1,2]"}`,
	},
	{
		name: "seq-publish",
		env:  Envelope{Kind: KindRequest, ID: 4, Name: RequestPublish, Room: "chat", Seq: 2, Payload: []byte("hi")},
		bin:  "01 03 93 04 0e 6d61726d6f742e7075626c697368 04 63686174 01 02 6869",
		json: `{"v":1,"kind":"request","id":4,"name":"marmot.publish","room":"chat","seq":2,"payload":"hi"}`,
	},
	{
		name: "ack",
		env:  Envelope{Kind: KindCommand, Name: AckCommand, Ack: 1000},
		bin:  "01 02 82 0a 6d61726d6f742e61636b 02 e807",
		json: `{"v":1,"kind":"command","name":"marmot.ack","ack":1000}`,
	},
}

// goldenVector returns the golden vector called name.
func goldenVector(t testing.TB, name string) (Envelope, []byte) {
	t.Helper()
	for _, g := range golden {
		if g.name == name {
			return g.env, unhex(t, g.bin)
		}
	}
	t.Fatalf("no golden vector %q", name)
	return Envelope{}, nil
}

// unhex decodes a golden hex string, ignoring spaces.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad test hex %q: %v", s, err)
	}
	return b
}

// equalEnvelope treats nil and empty Meta and Payload alike, as the
// encodings do.
func equalEnvelope(a, b *Envelope) bool {
	return a.Kind == b.Kind && a.ID == b.ID && a.Name == b.Name && a.Code == b.Code &&
		a.Room == b.Room && a.Offset == b.Offset && a.Epoch == b.Epoch && a.Seq == b.Seq && a.Ack == b.Ack &&
		bytes.Equal(a.Payload, b.Payload) &&
		(len(a.Meta) == 0 && len(b.Meta) == 0 || maps.Equal(a.Meta, b.Meta))
}
