package protocol

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestPresencePayloads checks the presence payloads against the examples
// published in PROTOCOL.md section 6.6, both ways.
func TestPresencePayloads(t *testing.T) {
	b, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, tc := range []struct {
		e    PresenceEvent
		json string
	}{
		{PresenceEvent{Event: PresenceJoin, Client: 7}, `{"event":"join","client":7}`},
		{PresenceEvent{Event: PresenceLeave, Client: 12}, `{"event":"leave","client":12}`},
	} {
		if !strings.Contains(doc, "\n"+tc.json+"\n") {
			t.Errorf("presence event %s missing from PROTOCOL.md section 6.6", tc.json)
		}
		if got := string(AppendPresenceEvent(nil, &tc.e)); got != tc.json {
			t.Errorf("AppendPresenceEvent(%+v) = %s, want %s", tc.e, got, tc.json)
		}
		if d, err := DecodePresenceEvent([]byte(tc.json)); err != nil || d != tc.e {
			t.Errorf("DecodePresenceEvent(%s) = %+v, %v", tc.json, d, err)
		}
	}
	for _, tc := range []struct {
		l    PresenceList
		json string
	}{
		{PresenceList{Members: []uint64{3, 7, 12}}, `{"members":[3,7,12]}`},
		{PresenceList{}, `{"members":[]}`},
	} {
		if !strings.Contains(doc, "\n"+tc.json+"\n") {
			t.Errorf("presence list %s missing from PROTOCOL.md section 6.6", tc.json)
		}
		if got := string(AppendPresenceList(nil, &tc.l)); got != tc.json {
			t.Errorf("AppendPresenceList(%+v) = %s, want %s", tc.l, got, tc.json)
		}
		if d, err := DecodePresenceList([]byte(tc.json)); err != nil || !slices.Equal(d.Members, tc.l.Members) {
			t.Errorf("DecodePresenceList(%s) = %+v, %v", tc.json, d, err)
		}
	}
	if d, err := DecodePresenceList(nil); err != nil || len(d.Members) != 0 {
		t.Errorf("DecodePresenceList(empty) = %+v, %v", d, err)
	}
	for _, bad := range []string{``, `{`, `{"event":"wave","client":7}`, `{"event":"join"}`, `{"event":"join","client":0}`,
		`{"event":"join","client":-1}`, `{"event":7,"client":7}`, `[]`} {
		if _, err := DecodePresenceEvent([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodePresenceEvent(%s) = %v, want ErrMalformed", bad, err)
		}
	}
	for _, bad := range []string{`{`, `{"members":[1,"x"]}`, `{"members":-1}`, `[1]`} {
		if _, err := DecodePresenceList([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodePresenceList(%s) = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzDecodePresenceEvent: any bytes give a valid event or ErrMalformed,
// and a valid event encodes back to one that decodes the same.
func FuzzDecodePresenceEvent(f *testing.F) {
	for _, s := range []string{`{"event":"join","client":7}`, `{"event":"leave","client":12}`, `{"event":"join","client":18446744073709551615}`, `{}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		e, err := DecodePresenceEvent(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := DecodePresenceEvent(AppendPresenceEvent(nil, &e))
		if err != nil || again != e {
			t.Fatalf("round trip of %+v: %+v, %v", e, again, err)
		}
	})
}

// FuzzDecodePresenceList: any bytes give a list or ErrMalformed, and a
// list encodes back to the same.
func FuzzDecodePresenceList(f *testing.F) {
	for _, s := range []string{`{"members":[3,7,12]}`, `{"members":[]}`, ``, `{"members":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		l, err := DecodePresenceList(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := DecodePresenceList(AppendPresenceList(nil, &l))
		if err != nil || len(again.Members) != len(l.Members) || (len(l.Members) > 0 && !slices.Equal(again.Members, l.Members)) {
			t.Fatalf("round trip of %+v: %+v, %v", l, again, err)
		}
	})
}
