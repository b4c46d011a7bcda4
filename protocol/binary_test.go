package protocol

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestBinaryGolden(t *testing.T) {
	for _, tc := range golden {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.bin)
			got, err := Binary.Append(nil, &tc.env)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Append:\n got %x\nwant %x", got, want)
			}
			var e Envelope
			if err := Binary.Decode(want, &e); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equalEnvelope(&e, &tc.env) {
				t.Fatalf("Decode: got %+v, want %+v", e, tc.env)
			}
		})
	}
}

func TestBinaryAppendKeepsPrefix(t *testing.T) {
	dst := []byte("prefix")
	got, err := Binary.Append(dst, &Envelope{Kind: KindData, Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if want := "prefix\x01\x01\x00x"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// On error dst comes back unchanged.
	got, err = Binary.Append(dst, &Envelope{Kind: KindRequest})
	if !errors.Is(err, ErrInvalidEnvelope) || string(got) != "prefix" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestBinaryDecodePayloadAliasesInput(t *testing.T) {
	frame := []byte{1, 1, 0, 'a', 'b'}
	var e Envelope
	if err := Binary.Decode(frame, &e); err != nil {
		t.Fatal(err)
	}
	frame[3] = 'z'
	if string(e.Payload) != "zb" {
		t.Fatalf("payload %q does not alias the frame", e.Payload)
	}
	if cap(e.Payload) != len(e.Payload) {
		t.Fatalf("payload cap %d > len %d: appending would write into the caller's buffer", cap(e.Payload), len(e.Payload))
	}
}

func TestBinaryDecodeReusesEnvelope(t *testing.T) {
	var e Envelope
	_, traced := goldenVector(t, "request-traced")
	if err := Binary.Decode(traced, &e); err != nil {
		t.Fatal(err)
	}
	if err := Binary.Decode(unhex(t, "01 01 00"), &e); err != nil {
		t.Fatal(err)
	}
	if !equalEnvelope(&e, &Envelope{Kind: KindData}) || e.Meta != nil || e.Payload != nil {
		t.Fatalf("stale fields after reuse: %+v", e)
	}
}

func TestBinaryDecodeTruncated(t *testing.T) {
	// Every proper prefix of an envelope's header is malformed; cutting into
	// the payload yields a valid envelope with a shorter payload, since the
	// payload is "the rest of the frame".
	for _, name := range []string{"request-traced", "error-traced", "data-named-binary", "error"} {
		env, full := goldenVector(t, name)
		header := len(full) - len(env.Payload)
		for n := range header {
			var e Envelope
			err := Binary.Decode(full[:n], &e)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s truncated to %d bytes: got %v, want ErrMalformed", name, n, err)
			}
		}
		for n := header; n <= len(full); n++ {
			var e Envelope
			if err := Binary.Decode(full[:n], &e); err != nil {
				t.Errorf("%s truncated to %d bytes (in payload): %v", name, n, err)
				continue
			}
			if !bytes.Equal(e.Payload, env.Payload[:n-header]) {
				t.Errorf("%s truncated to %d bytes: payload %q", name, n, e.Payload)
			}
		}
	}
}

func TestBinaryDecodeErrors(t *testing.T) {
	long := func(n int) string { return strings.Repeat("61", n) }
	tests := []struct {
		name string
		hex  string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"version 0", "00 01 00", ErrUnsupportedVersion},
		{"version 2", "02 01 00", ErrUnsupportedVersion},
		{"version 255", "ff", ErrUnsupportedVersion},
		{"header 1 byte", "01", ErrMalformed},
		{"header 2 bytes", "01 01", ErrMalformed},
		{"kind 0", "01 00 00", ErrUnknownKind},
		{"kind 6", "01 06 00", ErrUnknownKind},
		{"kind 255", "01 ff 00", ErrUnknownKind},
		{"epoch flag without epoch", "01 01 40", ErrMalformed},
		{"extension flag without a block", "01 01 80", ErrMalformed},
		{"empty extension block", "01 01 80 00", ErrMalformed},
		{"reserved extension bit", "01 01 80 04 01", ErrMalformed},
		{"seq bit with seq 0", "01 01 80 01 00", ErrMalformed},
		{"ack bit with ack 0", "01 01 80 02 00", ErrMalformed},
		{"truncated seq", "01 01 80 01", ErrMalformed},
		{"non-minimal seq", "01 01 80 01 8100", ErrMalformed},
		{"seq on a reply", "01 04 81 01 01 05", ErrInvalidEnvelope},
		{"all flags", "01 01 ff", ErrMalformed},

		{"ID missing", "01 04 01", ErrMalformed},
		{"ID truncated varint", "01 04 01 80", ErrMalformed},
		{"ID varint overflow 10 bytes", "01 04 01 ffffffffffffffffff02", ErrMalformed},
		{"ID varint overflow 11 bytes", "01 04 01 ffffffffffffffffffff01", ErrMalformed},
		{"ID varint not minimal", "01 04 01 8700", ErrMalformed},
		{"ID zero", "01 04 01 00", ErrMalformed},
		{"ID zero not minimal", "01 04 01 8000", ErrMalformed},

		{"room empty", "01 01 10 00", ErrMalformed},
		{"room truncated", "01 01 10 05 6162", ErrMalformed},
		{"room too long", "01 01 10 8002", ErrInvalidEnvelope},
		{"room invalid UTF-8", "01 01 10 01 ff", ErrMalformed},
		{"room missing", "01 01 10", ErrMalformed},
		{"offset zero", "01 01 30 01 61 00", ErrMalformed},
		{"offset missing", "01 01 30 01 61", ErrMalformed},
		{"offset not minimal", "01 01 30 01 61 8100", ErrMalformed},
		{"offset without room", "01 01 20 01", ErrInvalidEnvelope},
		{"epoch without room", "01 01 40 01 65", ErrInvalidEnvelope},
		{"epoch empty", "01 01 50 01 61 00", ErrMalformed},
		{"epoch truncated", "01 01 50 01 61 02 65", ErrMalformed},
		{"epoch over limit", "01 01 50 01 61 41", ErrInvalidEnvelope},
		{"epoch bad UTF-8", "01 01 50 01 61 01 ff", ErrMalformed},
		{"room on reply", "01 04 11 01 01 61", ErrInvalidEnvelope},

		{"name empty", "01 02 02 00", ErrMalformed},
		{"name length not minimal", "01 02 02 8100 61", ErrMalformed},
		{"name truncated", "01 02 02 05 6162", ErrMalformed},
		{"name too long", "01 02 02 8002 " + long(256), ErrInvalidEnvelope},
		{"name huge length", "01 02 02 ffffffffffffffffff01", ErrInvalidEnvelope},
		{"name invalid UTF-8", "01 02 02 02 c328", ErrMalformed},
		{"name surrogate UTF-8", "01 02 02 03 eda080", ErrMalformed},

		{"code zero", "01 05 09 07 00", ErrMalformed},
		{"code over 32 bits", "01 05 09 07 8080808010", ErrMalformed},
		{"code truncated", "01 05 09 07", ErrMalformed},

		{"meta count zero", "01 01 04 00", ErrMalformed},
		{"meta count 33", "01 01 04 21" + strings.Repeat(" 01 61 00", 33), ErrInvalidEnvelope},
		{"meta count huge", "01 01 04 ffffffff0f", ErrInvalidEnvelope},
		{"meta count exceeds input", "01 01 04 02 01 61 00", ErrMalformed},
		{"meta empty key", "01 01 04 01 00 00 00", ErrInvalidEnvelope},
		{"meta key too long", "01 01 04 01 41 " + long(65) + " 00", ErrInvalidEnvelope},
		{"meta key huge length", "01 01 04 01 ffffffff0f", ErrInvalidEnvelope},
		{"meta key truncated", "01 01 04 01 05 616100", ErrMalformed},
		{"meta value too long", "01 01 04 01 01 61 8108" + long(1025), ErrInvalidEnvelope},
		{"meta value huge length", "01 01 04 01 01 61 ffffffffffffffffff01", ErrInvalidEnvelope},
		{"meta value truncated", "01 01 04 01 01 61 05 6161", ErrMalformed},
		{"meta value length missing", "01 01 04 01 01 61", ErrMalformed},
		{"meta key invalid UTF-8", "01 01 04 01 01 ff 00", ErrMalformed},
		{"meta value invalid UTF-8", "01 01 04 01 01 61 01 ff", ErrMalformed},
		{"meta keys out of order", "01 01 04 02 01 62 00 01 61 00", ErrMalformed},
		{"meta keys duplicated", "01 01 04 02 01 61 00 01 61 00", ErrMalformed},
		{"meta key length not minimal", "01 01 04 01 8100 61 00", ErrMalformed},

		{"data with ID", "01 01 01 07", ErrInvalidEnvelope},
		{"data with code", "01 01 08 01", ErrInvalidEnvelope},
		{"command without name", "01 02 00", ErrInvalidEnvelope},
		{"command with ID", "01 02 03 07 01 61", ErrInvalidEnvelope},
		{"command with code", "01 02 0a 01 61 05", ErrInvalidEnvelope},
		{"request without ID", "01 03 02 03 73756d", ErrInvalidEnvelope},
		{"request without name", "01 03 01 07", ErrInvalidEnvelope},
		{"request with code", "01 03 0b 07 01 61 05", ErrInvalidEnvelope},
		{"reply without ID", "01 04 00 33", ErrInvalidEnvelope},
		{"reply with name", "01 04 03 07 01 61", ErrInvalidEnvelope},
		{"reply with code", "01 04 09 07 05", ErrInvalidEnvelope},
		{"error without ID", "01 05 08 05", ErrInvalidEnvelope},
		{"error with name", "01 05 03 07 01 61", ErrInvalidEnvelope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e Envelope
			err := Binary.Decode(unhex(t, tc.hex), &e)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBinaryAppendCanonical(t *testing.T) {
	// Meta keys come out sorted whatever the map's iteration order, so the
	// same envelope always encodes to the same bytes.
	e := Envelope{Kind: KindData, Meta: map[string]string{}}
	for _, k := range []string{"z", "a", "m", "b", "y", "é", "A", "0"} {
		e.Meta[k] = k
	}
	first, err := Binary.Append(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, _ := Binary.Append(nil, &e)
		if !bytes.Equal(first, again) {
			t.Fatalf("non-deterministic encoding:\n%x\n%x", first, again)
		}
	}
	var d Envelope
	if err := Binary.Decode(first, &d); err != nil {
		t.Fatalf("decoding own encoding: %v", err)
	}
	// An empty (non-nil) map encodes like a nil one.
	got, _ := Binary.Append(nil, &Envelope{Kind: KindData, Meta: map[string]string{}})
	if want := []byte{1, 1, 0}; !bytes.Equal(got, want) {
		t.Fatalf("empty meta: got %x, want %x", got, want)
	}
}

func TestBinaryDecodeLargeFieldValues(t *testing.T) {
	e := Envelope{
		Kind: KindError, ID: 1<<64 - 1, Code: 1<<32 - 1,
		Meta: map[string]string{strings.Repeat("k", MaxMetaKeyLen): strings.Repeat("v", MaxMetaValueLen)},
	}
	for i := range MaxMetaEntries - 1 {
		e.Meta[string(rune('a'+i))] = ""
	}
	b, err := Binary.Append(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	var d Envelope
	if err := Binary.Decode(b, &d); err != nil {
		t.Fatal(err)
	}
	if !equalEnvelope(&d, &e) {
		t.Fatalf("got %+v", d)
	}
	name := Envelope{Kind: KindCommand, Name: strings.Repeat("n", MaxNameLen)}
	b, err = Binary.Append(nil, &name)
	if err != nil {
		t.Fatal(err)
	}
	if err := Binary.Decode(b, &d); err != nil || d.Name != name.Name {
		t.Fatalf("max-length name: %v", err)
	}
}

// TestBinaryDecodeHugeClaimsDoNotAllocate checks that lengths and counts are
// checked against the limits and the remaining input before anything is
// allocated for them: a few bytes claiming gigabytes cost only the error.
func TestBinaryDecodeHugeClaimsDoNotAllocate(t *testing.T) {
	frames := []string{
		"01 01 04 ffffffff0f",                                // meta count 2^32-1
		"01 01 04 20 000000",                                 // 32 entries claimed, 3 bytes left
		"01 01 04 01 ffffffff0f",                             // key length 2^32-1
		"01 01 04 01 01 61 ffffffffffffffffff01",             // value length 2^64-1
		"01 02 02 ffffffffffffffffff01",                      // name length 2^64-1
		"01 01 04 02 01 61 00 40" + strings.Repeat("6b", 64), // second key truncated
	}
	for _, h := range frames {
		frame := unhex(t, h)
		var e Envelope
		if err := Binary.Decode(frame, &e); err == nil {
			t.Fatalf("%s: decoded", h)
		}
		// Only the error value (message formatting) may allocate: about
		// 100-150 bytes, a little more under the race detector. The claims
		// are 2^32 and more, and even a 32-entry map would exceed 512 bytes.
		got := bytesPerRun(100, func() { _ = Binary.Decode(frame, &e) })
		if got > 512 {
			t.Errorf("%s: %d bytes allocated per rejected %d-byte frame", h, got, len(frame))
		}
	}
}

func TestBinaryDecodeAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	frames := map[string][]byte{
		"data":    unhex(t, "01 01 00 6869"),
		"request": unhex(t, "01 03 03 07 03 73756d 5b312c325d"),
		"error":   unhex(t, "01 05 09 07 9403 6e6f"),
	}
	for name, frame := range frames {
		var e Envelope
		if err := Binary.Decode(frame, &e); err != nil {
			t.Fatal(err)
		}
		// Reusing the envelope: the repeated name is not reallocated.
		if n := testing.AllocsPerRun(100, func() { _ = Binary.Decode(frame, &e) }); n != 0 {
			t.Errorf("%s: %v allocs per Decode, want 0", name, n)
		}
	}
	_, traced := goldenVector(t, "request-traced")
	var e Envelope
	if n := testing.AllocsPerRun(100, func() { _ = Binary.Decode(traced, &e) }); n > 3 {
		t.Errorf("traced: %v allocs per Decode, want <= 3 (map header, map group, one string)", n)
	}
	dst := make([]byte, 0, 1024)
	for _, tc := range golden {
		if n := testing.AllocsPerRun(100, func() { _, _ = Binary.Append(dst[:0], &tc.env) }); n != 0 {
			t.Errorf("%s: %v allocs per Append into a reused buffer, want 0", tc.name, n)
		}
	}
}

// bytesPerRun is the average number of bytes f allocates per call.
func bytesPerRun(runs int, f func()) uint64 {
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}
