package httpconn

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeRecords: send and poll bodies never panic, never read past the
// body, and what decodes re-encodes to the same bytes.
func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte{}, int64(0))
	f.Add(appendRecord(appendRecord(nil, recText, []byte("hi")), recBinary, []byte{0, 1, 2}), int64(10))
	f.Add(appendRecord(nil, recClose, closePayload(1000, "bye")), int64(1))
	f.Add([]byte{2, 0xff, 0xff, 0xff, 0xff, 1}, int64(0))
	f.Add([]byte{9, 0, 0, 0, 0}, int64(0))
	f.Add([]byte{1, 0, 0}, int64(0))
	f.Fuzz(func(t *testing.T, body []byte, limit int64) {
		var again []byte
		err := decodeRecords(body, limit, func(typ byte, data []byte) error {
			if limit > 0 && typ != recClose && int64(len(data)) > limit {
				t.Fatalf("a record of %d bytes passed the limit %d", len(data), limit)
			}
			if typ == recClose {
				if code, text, err := parseClose(data); err == nil && (code < 1000 || code >= 5000 || len(text) > maxCloseText) {
					t.Fatalf("close record %d %q accepted", code, text)
				}
			}
			again = appendRecord(again, typ, data)
			return nil
		})
		switch {
		case err == nil && !bytes.Equal(again, body):
			t.Fatalf("re-encoded %x, got %x", again, body)
		case err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge):
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzOpenReply: the client's decoder of an open's answer and the query
// number parser never panic and accept only sane values.
func FuzzOpenReply(f *testing.F) {
	f.Add([]byte(`{"session":"q3Zt6yX0b8Hk1mZ2c9Vw4A","subprotocol":"marmot.v1","pollTimeout":25000,"idleTimeout":30000,"maxBody":1048581}`), "12")
	f.Add([]byte(`{"session":"","pollTimeout":-1}`), "")
	f.Add([]byte(`null`), "9007199254740993")
	f.Fuzz(func(t *testing.T, body []byte, seq string) {
		if r, err := decodeOpenReply(body); err == nil {
			if len(r.Session) < 16 || r.PollTimeout <= 0 || r.IdleTimeout <= 0 || r.MaxBody <= recHeader {
				t.Fatalf("accepted %+v", r)
			}
		}
		if n, err := parseSeq(seq); err == nil && n >= 1<<53 {
			t.Fatalf("accepted seq %d", n)
		}
	})
}
