package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// sentinel returns the sentinel error err wraps, so that fuzz properties can
// compare error classes.
func sentinel(err error) error {
	for _, s := range []error{ErrMalformed, ErrUnsupportedVersion, ErrUnknownKind, ErrInvalidEnvelope} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// checkCrossCodec checks that an envelope one codec accepted survives the
// other codec too: the two formats carry the same envelopes.
func checkCrossCodec(t *testing.T, e *Envelope) {
	t.Helper()
	for _, c := range []Codec{Binary, JSON} {
		out, err := c.Append(nil, e)
		if c == JSON && overJSON(e) {
			if !errors.Is(err, ErrInvalidEnvelope) {
				t.Fatalf("JSON Append with ID %d, offset %d, seq %d, ack %d: %v", e.ID, e.Offset, e.Seq, e.Ack, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s Append of a decoded envelope %+v: %v", c.Subprotocol(), e, err)
		}
		var d Envelope
		if err := c.Decode(out, &d); err != nil {
			t.Fatalf("%s Decode(%q): %v", c.Subprotocol(), out, err)
		}
		if !equalEnvelope(&d, e) {
			t.Fatalf("%s round trip: got %+v, want %+v", c.Subprotocol(), d, *e)
		}
	}
}

// overJSON reports whether e has a number the JSON codec cannot carry.
func overJSON(e *Envelope) bool {
	return max(e.ID, e.Offset, e.Seq, e.Ack) > MaxJSONSafeInteger
}

func FuzzBinaryDecode(f *testing.F) {
	for _, tc := range golden {
		f.Add(unhex(f, tc.bin))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 4, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{1, 1, 4, 2, 1, 'a', 0, 1, 'b', 0})
	f.Add([]byte{1, 3, 3, 0x80, 0x01, 1, 'x'})
	f.Add([]byte{1, 2, 0x82, 1, 'x', 3, 1, 2})
	f.Add([]byte{1, 1, 0x80, 4, 1})
	f.Fuzz(func(t *testing.T, msg []byte) {
		var e Envelope
		if err := Binary.Decode(msg, &e); err != nil {
			if sentinel(err) == err {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		// The encoding is canonical: what decodes re-encodes to the same
		// bytes.
		out, err := Binary.Append(nil, &e)
		if err != nil {
			t.Fatalf("Append of decoded %+v: %v", e, err)
		}
		if !bytes.Equal(out, msg) {
			t.Fatalf("not canonical:\n in %x\nout %x", msg, out)
		}
		checkCrossCodec(t, &e)
	})
}

func FuzzJSONDecode(f *testing.F) {
	for _, tc := range golden {
		f.Add([]byte(tc.json))
	}
	for _, s := range []string{
		``, `{}`, `{"v":1,"kind":"data","payload_b64":"/wA="}`,
		`{"v":1,"kind":"command","name":"\ud83d\ude00\u0000","meta":{"a":"\"","b":""}}`,
		`{"kind":"data","x":[1,{"y":null}],"v":2}`,
		`{"v":1,"kind":"reply","id":9007199254740991,"payload":" \t"}`,
		`{"v":1.5e3,"kind":"data"}`,
		`{"v":1,"kind":"command","name":"a","seq":0}`,
		`{"v":1,"kind":"reply","id":1,"ack":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var e Envelope
		if err := JSON.Decode(msg, &e); err != nil {
			if sentinel(err) == err {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		// We are stricter than encoding/json, never laxer.
		if !json.Valid(msg) {
			t.Fatalf("accepted invalid JSON %q", msg)
		}
		out, err := JSON.Append(nil, &e)
		if err != nil {
			t.Fatalf("Append of decoded %+v: %v", e, err)
		}
		var d Envelope
		if err := JSON.Decode(out, &d); err != nil {
			t.Fatalf("Decode(%s): %v", out, err)
		}
		if !equalEnvelope(&d, &e) {
			t.Fatalf("round trip: got %+v, want %+v", d, e)
		}
		// The encoder's output is a fixed point.
		again, _ := JSON.Append(nil, &d)
		if !bytes.Equal(again, out) {
			t.Fatalf("encoding not deterministic:\n%s\n%s", out, again)
		}
		checkCrossCodec(t, &e)
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(KindRequest), uint64(7), "sum", uint32(0), "traceparent", traceparent, "", "", "", uint64(0), "", uint64(0), uint64(0), []byte("[1,2]"))
	f.Add(uint8(KindError), uint64(1<<60), "", uint32(404), "a", "", "b", "\xff", "", uint64(0), "", uint64(0), uint64(0), []byte{0xff})
	f.Add(uint8(KindData), uint64(0), "é\"\\\n", uint32(0), "", "", "", "", "", uint64(0), "", uint64(0), uint64(0), []byte("\x00\x01"))
	f.Add(uint8(0), uint64(0), "", uint32(0), "", "", "", "", "", uint64(0), "", uint64(0), uint64(0), []byte(nil))
	f.Add(uint8(KindCommand), uint64(0), "move", uint32(0), "", "", "", "", "game", uint64(300), "", uint64(0), uint64(0), []byte("e2e4"))
	f.Add(uint8(KindData), uint64(0), "", uint32(0), "", "", "", "", "chat", uint64(1<<60), "", uint64(0), uint64(0), []byte("x"))
	f.Add(uint8(KindRequest), uint64(1), RequestJoin, uint32(0), "", "", "", "", "chat", uint64(0), "", uint64(0), uint64(0), []byte(nil))
	f.Add(uint8(KindRequest), uint64(2), RequestJoin, uint32(0), "", "", "", "", "chat", uint64(42), "e1", uint64(0), uint64(0), []byte(nil))
	f.Add(uint8(KindCommand), uint64(0), "chat", uint32(0), "", "", "", "", "", uint64(0), "", uint64(300), uint64(0), []byte("hi"))
	f.Add(uint8(KindCommand), uint64(0), AckCommand, uint32(0), "", "", "", "", "", uint64(0), "", uint64(0), uint64(1<<60), []byte(nil))
	f.Add(uint8(KindReply), uint64(1), "", uint32(0), "", "", "", "", "", uint64(0), "", uint64(1), uint64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, kind uint8, id uint64, name string, code uint32, k1, v1, k2, v2, room string, offset uint64, epoch string, seq, ack uint64, payload []byte) {
		e := Envelope{Kind: Kind(kind), ID: id, Name: name, Code: code, Room: room, Offset: offset, Epoch: epoch, Seq: seq, Ack: ack, Payload: payload}
		if k1 != "" || v1 != "" || k2 != "" || v2 != "" {
			e.Meta = map[string]string{k1: v1, k2: v2}
		}
		verr := e.Validate()
		for _, c := range []Codec{Binary, JSON} {
			out, err := c.Append(nil, &e)
			if verr != nil {
				if sentinel(err) != sentinel(verr) {
					t.Fatalf("%s Append: %v; Validate: %v", c.Subprotocol(), err, verr)
				}
				continue
			}
			if c == JSON && overJSON(&e) {
				if !errors.Is(err, ErrInvalidEnvelope) {
					t.Fatalf("JSON Append with ID %d, offset %d: %v", id, offset, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s Append of valid %+v: %v", c.Subprotocol(), e, err)
			}
			var d Envelope
			if err := c.Decode(out, &d); err != nil {
				t.Fatalf("%s Decode(%q): %v", c.Subprotocol(), out, err)
			}
			if !equalEnvelope(&d, &e) {
				t.Fatalf("%s round trip: got %+v, want %+v", c.Subprotocol(), d, e)
			}
		}
	})
}

// FuzzAuthToken feeds the first-message authentication decoder what a
// client may send first: an envelope in either codec, or a raw message.
// It must never panic, and a token it accepts is the payload, bounded.
func FuzzAuthToken(f *testing.F) {
	for _, c := range []Codec{Binary, JSON} {
		b, _ := c.Append(nil, &Envelope{Kind: KindRequest, ID: 1, Name: AuthRequestName, Payload: []byte("eyJhbGciOiJIUzI1NiJ9.e30.sig")})
		f.Add(b)
	}
	f.Add([]byte("eyJhbGciOiJIUzI1NiJ9.e30.sig"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []Codec{Binary, JSON} {
			var e Envelope
			if c.Decode(data, &e) != nil {
				continue
			}
			tok, err := AuthToken(e.Kind, e.Name, e.Payload, false)
			if err == nil && (tok != string(e.Payload) || len(tok) > MaxTokenSize || tok == "") {
				t.Fatalf("accepted token %q from %+v", tok, e)
			}
			if err != nil && !errors.Is(err, ErrInvalidEnvelope) {
				t.Fatalf("error %v does not wrap ErrInvalidEnvelope", err)
			}
		}
		tok, err := AuthToken(KindData, "", data, true)
		if err == nil && tok != string(data) {
			t.Fatalf("raw token %q from %q", tok, data)
		}
	})
}
