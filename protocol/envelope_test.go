package protocol

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestKindString(t *testing.T) {
	tests := map[Kind]string{
		0: "kind(0)", KindData: "data", KindCommand: "command", KindRequest: "request",
		KindReply: "reply", KindError: "error", 6: "kind(6)", 255: "kind(255)",
	}
	for k, want := range tests {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}

func TestParseKind(t *testing.T) {
	for k := KindData; k <= KindError; k++ {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	for _, s := range []string{"", "Data", "DATA", "kind(1)", "1", " data", "event", strings.Repeat("x", 1000)} {
		if _, err := ParseKind(s); !errors.Is(err, ErrUnknownKind) {
			t.Errorf("ParseKind(%q): got %v, want ErrUnknownKind", s, err)
		}
	}
}

func TestValidate(t *testing.T) {
	meta := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[strings.Repeat("k", i+1)] = "v"
		}
		return m
	}
	tests := []struct {
		name string
		e    Envelope
		want error // nil: valid
	}{
		{"data", Envelope{Kind: KindData}, nil},
		{"data named", Envelope{Kind: KindData, Name: "topic", Payload: []byte("x")}, nil},
		{"data with ID", Envelope{Kind: KindData, ID: 1}, ErrInvalidEnvelope},
		{"data with code", Envelope{Kind: KindData, Code: 1}, ErrInvalidEnvelope},
		{"command", Envelope{Kind: KindCommand, Name: "c"}, nil},
		{"command without name", Envelope{Kind: KindCommand}, ErrInvalidEnvelope},
		{"command with ID", Envelope{Kind: KindCommand, Name: "c", ID: 1}, ErrInvalidEnvelope},
		{"command with code", Envelope{Kind: KindCommand, Name: "c", Code: 1}, ErrInvalidEnvelope},
		{"request", Envelope{Kind: KindRequest, ID: 1, Name: "r"}, nil},
		{"request without ID", Envelope{Kind: KindRequest, Name: "r"}, ErrInvalidEnvelope},
		{"request without name", Envelope{Kind: KindRequest, ID: 1}, ErrInvalidEnvelope},
		{"request with code", Envelope{Kind: KindRequest, ID: 1, Name: "r", Code: 1}, ErrInvalidEnvelope},
		{"reply", Envelope{Kind: KindReply, ID: 1}, nil},
		{"reply without ID", Envelope{Kind: KindReply}, ErrInvalidEnvelope},
		{"reply with name", Envelope{Kind: KindReply, ID: 1, Name: "r"}, ErrInvalidEnvelope},
		{"reply with code", Envelope{Kind: KindReply, ID: 1, Code: 1}, ErrInvalidEnvelope},
		{"error", Envelope{Kind: KindError, ID: 1, Code: 7, Payload: []byte("bad")}, nil},
		{"error code 0", Envelope{Kind: KindError, ID: 1}, nil},
		{"error without ID", Envelope{Kind: KindError, Code: 7}, ErrInvalidEnvelope},
		{"error with name", Envelope{Kind: KindError, ID: 1, Name: "e"}, ErrInvalidEnvelope},
		{"room data", Envelope{Kind: KindData, Room: "r", Offset: 1}, nil},
		{"room command", Envelope{Kind: KindCommand, Name: "c", Room: "r", Offset: 1}, nil},
		{"room request", Envelope{Kind: KindRequest, ID: 1, Name: RequestJoin, Room: "r"}, nil},
		{"room data without offset", Envelope{Kind: KindData, Room: "r"}, nil},
		{"offset without room", Envelope{Kind: KindData, Offset: 1}, ErrInvalidEnvelope},
		{"recover request", Envelope{Kind: KindRequest, ID: 1, Name: "r", Room: "r", Offset: 1, Epoch: "e"}, nil},
		{"epoch without room", Envelope{Kind: KindData, Epoch: "e"}, ErrInvalidEnvelope},
		{"epoch at limit", Envelope{Kind: KindData, Room: "r", Epoch: strings.Repeat("e", MaxEpochLen)}, nil},
		{"epoch over limit", Envelope{Kind: KindData, Room: "r", Epoch: strings.Repeat("e", MaxEpochLen+1)}, ErrInvalidEnvelope},
		{"epoch bad UTF-8", Envelope{Kind: KindData, Room: "r", Epoch: "\xff"}, ErrInvalidEnvelope},
		{"room on reply", Envelope{Kind: KindReply, ID: 1, Room: "r"}, ErrInvalidEnvelope},
		{"room on error", Envelope{Kind: KindError, ID: 1, Room: "r"}, ErrInvalidEnvelope},
		{"room at limit", Envelope{Kind: KindData, Room: strings.Repeat("r", MaxRoomLen)}, nil},
		{"room too long", Envelope{Kind: KindData, Room: strings.Repeat("r", MaxRoomLen+1)}, ErrInvalidEnvelope},
		{"room invalid UTF-8", Envelope{Kind: KindData, Room: "\xff"}, ErrInvalidEnvelope},
		{"kind 0", Envelope{}, ErrUnknownKind},
		{"kind 6", Envelope{Kind: 6}, ErrUnknownKind},
		{"kind 255", Envelope{Kind: 255, ID: 1}, ErrUnknownKind},
		{"name at limit", Envelope{Kind: KindCommand, Name: strings.Repeat("n", MaxNameLen)}, nil},
		{"name too long", Envelope{Kind: KindCommand, Name: strings.Repeat("n", MaxNameLen+1)}, ErrInvalidEnvelope},
		{"name invalid UTF-8", Envelope{Kind: KindCommand, Name: "\xff"}, ErrInvalidEnvelope},
		{"meta at limit", Envelope{Kind: KindData, Meta: meta(MaxMetaEntries)}, nil},
		{"meta too many", Envelope{Kind: KindData, Meta: meta(MaxMetaEntries + 1)}, ErrInvalidEnvelope},
		{"meta empty key", Envelope{Kind: KindData, Meta: map[string]string{"": "v"}}, ErrInvalidEnvelope},
		{"meta empty value", Envelope{Kind: KindData, Meta: map[string]string{"k": ""}}, nil},
		{"meta key at limit", Envelope{Kind: KindData, Meta: map[string]string{strings.Repeat("k", MaxMetaKeyLen): ""}}, nil},
		{"meta key too long", Envelope{Kind: KindData, Meta: map[string]string{strings.Repeat("k", MaxMetaKeyLen+1): ""}}, ErrInvalidEnvelope},
		{"meta value at limit", Envelope{Kind: KindData, Meta: map[string]string{"k": strings.Repeat("v", MaxMetaValueLen)}}, nil},
		{"meta value too long", Envelope{Kind: KindData, Meta: map[string]string{"k": strings.Repeat("v", MaxMetaValueLen+1)}}, ErrInvalidEnvelope},
		{"meta key invalid UTF-8", Envelope{Kind: KindData, Meta: map[string]string{"\xff": "v"}}, ErrInvalidEnvelope},
		{"meta value invalid UTF-8", Envelope{Kind: KindData, Meta: map[string]string{"k": "\xff"}}, ErrInvalidEnvelope},
		{"binary payload", Envelope{Kind: KindData, Payload: []byte{0xff}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.e.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
			} else if !errors.Is(err, tc.want) {
				t.Fatalf("Validate: got %v, want %v", err, tc.want)
			}
			// Both codecs refuse to encode what Validate refuses.
			for _, c := range []Codec{Binary, JSON} {
				out, aerr := c.Append(nil, &tc.e)
				if tc.want == nil {
					if aerr != nil {
						t.Fatalf("%s Append: %v", c.Subprotocol(), aerr)
					}
					var d Envelope
					if derr := c.Decode(out, &d); derr != nil || !equalEnvelope(&d, &tc.e) {
						t.Fatalf("%s round trip: %v, %+v", c.Subprotocol(), derr, d)
					}
				} else if !errors.Is(aerr, tc.want) || out != nil {
					t.Fatalf("%s Append: got %q, %v, want %v", c.Subprotocol(), out, aerr, tc.want)
				}
			}
		})
	}
}

func TestErrorsAreDistinct(t *testing.T) {
	errs := []error{ErrMalformed, ErrUnsupportedVersion, ErrUnknownKind, ErrInvalidEnvelope}
	for i, a := range errs {
		for j, b := range errs {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}

func TestLookup(t *testing.T) {
	if c, ok := Lookup(SubprotocolBinary); !ok || c != Binary {
		t.Errorf("Lookup(%q) = %v, %v", SubprotocolBinary, c, ok)
	}
	if c, ok := Lookup(SubprotocolJSON); !ok || c != JSON {
		t.Errorf("Lookup(%q) = %v, %v", SubprotocolJSON, c, ok)
	}
	for _, s := range []string{"", "marmot", "marmot.v2", "MARMOT.V1", "marmot.v1 "} {
		if c, ok := Lookup(s); ok || c != nil {
			t.Errorf("Lookup(%q) = %v, %v, want nil, false", s, c, ok)
		}
	}
}

func TestSubprotocols(t *testing.T) {
	got := Subprotocols()
	if want := []string{"marmot.v1", "marmot.json.v1"}; !slices.Equal(got, want) {
		t.Fatalf("Subprotocols() = %q, want %q", got, want)
	}
	got[0] = "changed"
	if Subprotocols()[0] != "marmot.v1" {
		t.Fatal("Subprotocols returns a shared slice")
	}
	for _, s := range Subprotocols() {
		c, ok := Lookup(s)
		if !ok || c.Subprotocol() != s {
			t.Errorf("Lookup(%q).Subprotocol() = %q", s, c.Subprotocol())
		}
	}
}

func TestMessageType(t *testing.T) {
	// Same numbers as gorilla/websocket's TextMessage and BinaryMessage.
	if Binary.MessageType() != 2 || JSON.MessageType() != 1 {
		t.Fatalf("MessageType: binary %d, json %d", Binary.MessageType(), JSON.MessageType())
	}
}
