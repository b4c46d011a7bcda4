package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestJSONGolden(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			got, err := JSON.Append(nil, &tc.env)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if string(got) != tc.json {
				t.Fatalf("Append:\n got %s\nwant %s", got, tc.json)
			}
			if !json.Valid(got) {
				t.Fatalf("encoding/json rejects our output %s", got)
			}
			var e Envelope
			if err := JSON.Decode([]byte(tc.json), &e); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equalEnvelope(&e, &tc.env) {
				t.Fatalf("Decode: got %+v, want %+v", e, tc.env)
			}
		})
	}
}

// TestJSONAgreesWithEncodingJSON cross-checks the hand-written string
// appender against encoding/json's decoder on every byte value.
func TestJSONAgreesWithEncodingJSON(t *testing.T) {
	var all strings.Builder
	for c := range 0x80 {
		all.WriteByte(byte(c))
	}
	all.WriteString("é€😀\u2028\u2029\ufffd")
	s := all.String()
	out := appendJSONString(nil, s)
	var back string
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("encoding/json rejects %s: %v", out, err)
	}
	if back != s {
		t.Fatalf("round trip through encoding/json: got %q, want %q", back, s)
	}
	// And our decoder reads what encoding/json writes, including its
	// HTML-safe \u003c escapes.
	std, _ := json.Marshal(map[string]any{"v": 1, "kind": "data", "name": s, "payload": "<&>"})
	var e Envelope
	if err := JSON.Decode(std, &e); err != nil {
		t.Fatalf("Decode(%s): %v", std, err)
	}
	if e.Name != s || string(e.Payload) != "<&>" {
		t.Fatalf("got name %q payload %q", e.Name, e.Payload)
	}
}

func TestJSONDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Envelope
	}{
		{"whitespace", " \t\r\n{ \"v\" : 1 , \"kind\" : \"data\" , \"payload\" : \"x\" } \n", Envelope{Kind: KindData, Payload: []byte("x")}},
		{"member order", `{"payload":"3","id":7,"kind":"reply","v":1}`, Envelope{Kind: KindReply, ID: 7, Payload: []byte("3")}},
		{"zero code on request", `{"v":1,"kind":"request","id":7,"name":"sum","code":0,"meta":{"traceparent":"tp"},"payload":"text"}`,
			Envelope{Kind: KindRequest, ID: 7, Name: "sum", Meta: map[string]string{"traceparent": "tp"}, Payload: []byte("text")}},
		{"zero id on data", `{"v":1,"kind":"data","id":0}`, Envelope{Kind: KindData}},
		{"empty name on reply", `{"v":1,"kind":"reply","id":1,"name":""}`, Envelope{Kind: KindReply, ID: 1}},
		{"empty meta", `{"v":1,"kind":"data","meta":{}}`, Envelope{Kind: KindData}},
		{"empty payload", `{"v":1,"kind":"data","payload":""}`, Envelope{Kind: KindData}},
		{"empty payload_b64", `{"v":1,"kind":"data","payload_b64":""}`, Envelope{Kind: KindData}},
		{"payload_b64 of text", `{"v":1,"kind":"data","payload_b64":"aGk="}`, Envelope{Kind: KindData, Payload: []byte("hi")}},
		{"escaped payload_b64", `{"v":1,"kind":"data","payload_b64":"\/wA="}`, Envelope{Kind: KindData, Payload: []byte{0xff, 0}}},
		{"max safe id", `{"v":1,"kind":"reply","id":9007199254740991}`, Envelope{Kind: KindReply, ID: 1<<53 - 1}},
		{"max code", `{"v":1,"kind":"error","id":1,"code":4294967295}`, Envelope{Kind: KindError, ID: 1, Code: 1<<32 - 1}},
		{"escapes", `{"v":1,"kind":"command","name":"a\u00e9\ud83d\ude00\/\"\\\b\f\n\r\t\u0000"}`,
			Envelope{Kind: KindCommand, Name: "aé😀/\"\\\b\f\n\r\t\x00"}},
		{"escaped member names", `{"\u0076":1,"k\u0069nd":"d\u0061ta","meta":{"\u006b":"v"}}`,
			Envelope{Kind: KindData, Meta: map[string]string{"k": "v"}}},
		{"utf8 payload", `{"v":1,"kind":"data","payload":"ünïcödé 😀"}`, Envelope{Kind: KindData, Payload: []byte("ünïcödé 😀")}},
		{"meta max", `{"v":1,"kind":"data","meta":{` + metaJSON(MaxMetaEntries) + `}}`, Envelope{Kind: KindData, Meta: metaMap(MaxMetaEntries)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e Envelope
			if err := JSON.Decode([]byte(tc.in), &e); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equalEnvelope(&e, &tc.want) {
				t.Fatalf("got %+v, want %+v", e, tc.want)
			}
		})
	}
}

func metaJSON(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":"v%d"`, i, i)
	}
	return strings.Join(parts, ",")
}

func metaMap(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = fmt.Sprintf("v%d", i)
	}
	return m
}

func TestJSONDecodeErrors(t *testing.T) {
	const d = `"v":1,"kind":"data"`
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", ``, ErrMalformed},
		{"room not a string", `{"v":1,"kind":"data","room":1}`, ErrMalformed},
		{"room too long", `{"v":1,"kind":"data","room":"` + strings.Repeat("r", MaxRoomLen+1) + `"}`, ErrInvalidEnvelope},
		{"offset not a number", `{"v":1,"kind":"data","room":"r","offset":"1"}`, ErrMalformed},
		{"offset negative", `{"v":1,"kind":"data","room":"r","offset":-1}`, ErrMalformed},
		{"offset above 2^53-1", `{"v":1,"kind":"data","room":"r","offset":9007199254740992}`, ErrMalformed},
		{"offset without room", `{"v":1,"kind":"data","offset":1}`, ErrInvalidEnvelope},
		{"room on reply", `{"v":1,"kind":"reply","id":1,"room":"r"}`, ErrInvalidEnvelope},
		{"whitespace only", ` `, ErrMalformed},
		{"array", `[]`, ErrMalformed},
		{"string", `"x"`, ErrMalformed},
		{"null", `null`, ErrMalformed},
		{"truncated object", `{"v":1,"kind":"data"`, ErrMalformed},
		{"truncated member", `{"v":1,"kind":"da`, ErrMalformed},
		{"trailing garbage", `{` + d + `} x`, ErrMalformed},
		{"two objects", `{` + d + `}{}`, ErrMalformed},
		{"trailing comma", `{` + d + `,}`, ErrMalformed},
		{"missing colon", `{"v" 1,"kind":"data"}`, ErrMalformed},
		{"unquoted key", `{v:1,"kind":"data"}`, ErrMalformed},
		{"single quotes", `{'v':1,"kind":"data"}`, ErrMalformed},
		{"byte order mark", "\ufeff{" + d + `}`, ErrMalformed},

		{"missing v", `{"kind":"data"}`, ErrMalformed},
		{"v 0", `{"v":0,"kind":"data"}`, ErrUnsupportedVersion},
		{"v 2", `{"v":2,"kind":"data"}`, ErrUnsupportedVersion},
		{"v 2 with unknown members", `{"kind":"data","x":{"y":[1]},"v":2}`, ErrUnsupportedVersion},
		{"v string", `{"v":"1","kind":"data"}`, ErrMalformed},
		{"v float", `{"v":1.0,"kind":"data"}`, ErrMalformed},
		{"v null", `{"v":null,"kind":"data"}`, ErrMalformed},
		{"v huge", `{"v":99999999999999999999999,"kind":"data"}`, ErrUnsupportedVersion},
		{"v 1 then digits", `{"v":18446744073709551617,"kind":"data"}`, ErrUnsupportedVersion},
		{"v negative", `{"v":-1,"kind":"data"}`, ErrMalformed},

		{"unknown member", `{` + d + `,"nmae":"x"}`, ErrMalformed},
		{"duplicate member", `{` + d + `,"kind":"data"}`, ErrMalformed},
		{"duplicate v", `{"v":1,"v":1,"kind":"data"}`, ErrMalformed},
		{"deep nesting", `{` + d + `,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, ErrMalformed},
		{"bad literal", `{` + d + `,"x":tru}`, ErrMalformed},
		{"bad number", `{` + d + `,"x":1.}`, ErrMalformed},
		{"bad exponent", `{` + d + `,"x":1e}`, ErrMalformed},
		{"leading zero", `{"v":1,"kind":"reply","id":07}`, ErrMalformed},
		{"plus sign", `{"v":1,"kind":"reply","id":+7}`, ErrMalformed},

		{"missing kind", `{"v":1}`, ErrMalformed},
		{"kind number", `{"v":1,"kind":1}`, ErrMalformed},
		{"kind unknown", `{"v":1,"kind":"event"}`, ErrUnknownKind},
		{"kind wrong case", `{"v":1,"kind":"Data"}`, ErrUnknownKind},
		{"kind N", `{"v":1,"kind":"kind(1)"}`, ErrUnknownKind},
		{"kind empty", `{"v":1,"kind":""}`, ErrUnknownKind},

		{"id float", `{"v":1,"kind":"reply","id":7.0}`, ErrMalformed},
		{"id exponent", `{"v":1,"kind":"reply","id":7e0}`, ErrMalformed},
		{"id negative", `{"v":1,"kind":"reply","id":-7}`, ErrMalformed},
		{"id negative zero", `{"v":1,"kind":"data","id":-0}`, ErrMalformed},
		{"id string", `{"v":1,"kind":"reply","id":"7"}`, ErrMalformed},
		{"id null", `{"v":1,"kind":"reply","id":null}`, ErrMalformed},
		{"id bool", `{"v":1,"kind":"reply","id":true}`, ErrMalformed},
		{"id 2^53", `{"v":1,"kind":"reply","id":9007199254740992}`, ErrMalformed},
		{"id 2^64", `{"v":1,"kind":"reply","id":18446744073709551616}`, ErrMalformed},

		{"name number", `{"v":1,"kind":"command","name":1}`, ErrMalformed},
		{"name null", `{"v":1,"kind":"command","name":null}`, ErrMalformed},
		{"name too long", `{"v":1,"kind":"command","name":"` + strings.Repeat("n", 256) + `"}`, ErrInvalidEnvelope},
		{"name too long after unescaping", `{"v":1,"kind":"command","name":"` + strings.Repeat(`\u00e9`, 128) + `"}`, ErrInvalidEnvelope},

		{"code negative", `{"v":1,"kind":"error","id":1,"code":-1}`, ErrMalformed},
		{"code 2^32", `{"v":1,"kind":"error","id":1,"code":4294967296}`, ErrMalformed},
		{"code string", `{"v":1,"kind":"error","id":1,"code":"1"}`, ErrMalformed},

		{"meta array", `{` + d + `,"meta":[]}`, ErrMalformed},
		{"meta string", `{` + d + `,"meta":"a=b"}`, ErrMalformed},
		{"meta null", `{` + d + `,"meta":null}`, ErrMalformed},
		{"meta number value", `{` + d + `,"meta":{"a":1}}`, ErrMalformed},
		{"meta null value", `{` + d + `,"meta":{"a":null}}`, ErrMalformed},
		{"meta nested value", `{` + d + `,"meta":{"a":{}}}`, ErrMalformed},
		{"meta duplicate key", `{` + d + `,"meta":{"a":"1","a":"2"}}`, ErrMalformed},
		{"meta duplicate escaped key", `{` + d + `,"meta":{"a":"1","\u0061":"2"}}`, ErrMalformed},
		{"meta too many", `{` + d + `,"meta":{` + metaJSON(MaxMetaEntries+1) + `}}`, ErrInvalidEnvelope},
		{"meta empty key", `{` + d + `,"meta":{"":"x"}}`, ErrInvalidEnvelope},
		{"meta key too long", `{` + d + `,"meta":{"` + strings.Repeat("k", 65) + `":"x"}}`, ErrInvalidEnvelope},
		{"meta value too long", `{` + d + `,"meta":{"k":"` + strings.Repeat("v", 1025) + `"}}`, ErrInvalidEnvelope},

		{"payload and payload_b64", `{` + d + `,"payload":"hi","payload_b64":"aGk="}`, ErrMalformed},
		{"empty payload and payload_b64", `{` + d + `,"payload":"","payload_b64":""}`, ErrMalformed},
		{"payload number", `{` + d + `,"payload":1}`, ErrMalformed},
		{"payload object", `{` + d + `,"payload":{"a":1}}`, ErrMalformed},
		{"payload null", `{` + d + `,"payload":null}`, ErrMalformed},
		{"payload_b64 bad chars", `{` + d + `,"payload_b64":"!!!!"}`, ErrMalformed},
		{"payload_b64 no padding", `{` + d + `,"payload_b64":"/wA"}`, ErrMalformed},
		{"payload_b64 url alphabet", `{` + d + `,"payload_b64":"_wA="}`, ErrMalformed},
		{"payload_b64 non-zero pad bits", `{` + d + `,"payload_b64":"/wB="}`, ErrMalformed},
		{"payload_b64 line break", `{` + d + `,"payload_b64":"/w\nA="}`, ErrMalformed},
		{"payload_b64 number", `{` + d + `,"payload_b64":1}`, ErrMalformed},

		{"raw invalid UTF-8", `{` + d + `,"payload":"` + "\xff" + `"}`, ErrMalformed},
		{"raw invalid UTF-8 in name", `{"v":1,"kind":"command","name":"` + "\xc3\x28" + `"}`, ErrMalformed},
		{"raw surrogate UTF-8", `{` + d + `,"payload":"` + "\xed\xa0\x80" + `"}`, ErrMalformed},
		{"raw control character", `{` + d + `,"payload":"a` + "\n" + `b"}`, ErrMalformed},
		{"lone high surrogate", `{` + d + `,"payload":"\ud800"}`, ErrMalformed},
		{"lone high surrogate then text", `{` + d + `,"payload":"\ud800abcdef"}`, ErrMalformed},
		{"high surrogate then non-low", `{` + d + `,"payload":"\ud800\u0041"}`, ErrMalformed},
		{"lone low surrogate", `{` + d + `,"payload":"\udc00"}`, ErrMalformed},
		{"bad escape", `{` + d + `,"payload":"\x41"}`, ErrMalformed},
		{"short unicode escape", `{` + d + `,"payload":"\u41"}`, ErrMalformed},
		{"backslash at end", `{` + d + `,"payload":"\`, ErrMalformed},
		{"unterminated string", `{` + d + `,"payload":"abc`, ErrMalformed},

		{"data with id", `{"v":1,"kind":"data","id":1}`, ErrInvalidEnvelope},
		{"data with code", `{"v":1,"kind":"data","code":1}`, ErrInvalidEnvelope},
		{"command without name", `{"v":1,"kind":"command"}`, ErrInvalidEnvelope},
		{"request without id", `{"v":1,"kind":"request","name":"sum"}`, ErrInvalidEnvelope},
		{"request with zero id", `{"v":1,"kind":"request","id":0,"name":"sum"}`, ErrInvalidEnvelope},
		{"request without name", `{"v":1,"kind":"request","id":1}`, ErrInvalidEnvelope},
		{"reply with name", `{"v":1,"kind":"reply","id":1,"name":"sum"}`, ErrInvalidEnvelope},
		{"reply with code", `{"v":1,"kind":"reply","id":1,"code":3}`, ErrInvalidEnvelope},
		{"error without id", `{"v":1,"kind":"error","code":3}`, ErrInvalidEnvelope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e Envelope
			err := JSON.Decode([]byte(tc.in), &e)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestJSONDecodeTruncated(t *testing.T) {
	for _, tc := range golden {
		full := []byte(tc.json)
		for n := range len(full) {
			var e Envelope
			if err := JSON.Decode(full[:n], &e); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s truncated to %d bytes: got %v, want ErrMalformed", tc.name, n, err)
			}
		}
	}
}

func TestJSONAppendUnsafeID(t *testing.T) {
	e := Envelope{Kind: KindReply, ID: 1 << 53}
	if _, err := JSON.Append(nil, &e); !errors.Is(err, ErrInvalidEnvelope) {
		t.Fatalf("ID 2^53: got %v, want ErrInvalidEnvelope", err)
	}
	e.ID = MaxJSONSafeInteger
	if _, err := JSON.Append(nil, &e); err != nil {
		t.Fatalf("ID 2^53-1: %v", err)
	}
}

func TestJSONAppendAllocs(t *testing.T) {
	dst := make([]byte, 0, 4096)
	for _, tc := range golden {
		if n := testing.AllocsPerRun(100, func() { _, _ = JSON.Append(dst[:0], &tc.env) }); n != 0 {
			t.Errorf("%s: %v allocs per Append into a reused buffer, want 0", tc.name, n)
		}
	}
}

func TestJSONDecodeAllocs(t *testing.T) {
	// Unescaped payloads alias the message; a repeated name is reused.
	msg := []byte(`{"v":1,"kind":"request","id":7,"name":"sum","payload":"[1,2]"}`)
	var e Envelope
	if err := JSON.Decode(msg, &e); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = JSON.Decode(msg, &e) }); n != 0 {
		t.Errorf("%v allocs per Decode, want 0", n)
	}
}
