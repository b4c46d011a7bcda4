package boltstore

import (
	"bytes"
	"testing"
	"time"

	"github.com/marmotws/marmot/actors"
)

func TestCodecRoundTrip(t *testing.T) {
	m := meta{epoch: "0123456789abcdef", last: 300, first: 200, bytes: 1 << 40,
		dropped: []dropped{{upTo: 100, reason: "expired"}, {upTo: 199, reason: "overflow"}}}
	got, err := decodeMeta(m.encode())
	if err != nil || got.epoch != m.epoch || got.last != m.last || got.first != m.first || got.bytes != m.bytes ||
		len(got.dropped) != 2 || got.dropped[1] != m.dropped[1] {
		t.Fatalf("meta %+v, %v", got, err)
	}
	e := actors.HistoryEntry{Offset: 7, Name: "move", Data: []byte{0, 1, 2}, At: time.Unix(5, 6)}
	ge, err := decodeEntry(7, encodeEntry(&e))
	if err != nil || ge.Offset != 7 || ge.Name != "move" || !bytes.Equal(ge.Data, e.Data) || !ge.At.Equal(e.At) {
		t.Fatalf("entry %+v, %v", ge, err)
	}
}

// FuzzDecode: whatever the file holds, decoding returns an error or a
// consistent record, never a panic.
func FuzzDecode(f *testing.F) {
	m := meta{epoch: "e", last: 3, first: 2, bytes: 9, dropped: []dropped{{upTo: 1, reason: "overflow"}}}
	f.Add(m.encode())
	f.Add(encodeEntry(&actors.HistoryEntry{Name: "n", Data: []byte("d")}))
	f.Add([]byte{metaVersion, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMeta(b); err == nil {
			if m.first == 0 || m.first > m.last+1 || len(m.dropped) > maxDropped {
				t.Fatalf("inconsistent meta %+v", m)
			}
			if _, err := decodeMeta(m.encode()); err != nil {
				t.Fatalf("re-encoded meta does not decode: %v", err)
			}
		}
		if e, err := decodeEntry(1, b); err == nil && len(e.Name)+len(e.Data)+8 > len(b) {
			t.Fatalf("entry %+v longer than its %d bytes", e, len(b))
		}
	})
}
