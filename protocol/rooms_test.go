package protocol

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestJoinResult(t *testing.T) {
	b, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, tc := range []struct {
		r    JoinResult
		json string
	}{
		{JoinResult{Epoch: "e1", Offset: 42}, `{"epoch":"e1","offset":42}`},
		{JoinResult{Epoch: "e1", Offset: 45, Recover: &RecoverResult{Recovered: true, Missed: 3}},
			`{"epoch":"e1","offset":45,"recover":{"recovered":true,"missed":3}}`},
		{JoinResult{Epoch: "e2", Recover: &RecoverResult{Missed: -1, Reason: RecoverEpochChanged}},
			`{"epoch":"e2","recover":{"recovered":false,"missed":-1,"reason":"epoch changed"}}`},
	} {
		if !strings.Contains(doc, "\n"+tc.json+"\n") {
			t.Errorf("join result %s missing from PROTOCOL.md section 6.5", tc.json)
		}
		got := string(AppendJoinResult(nil, &tc.r))
		if got != tc.json {
			t.Errorf("AppendJoinResult(%+v) = %s, want %s", tc.r, got, tc.json)
		}
		d, err := DecodeJoinResult([]byte(tc.json))
		if err != nil || d.Epoch != tc.r.Epoch || d.Offset != tc.r.Offset || (d.Recover == nil) != (tc.r.Recover == nil) ||
			(d.Recover != nil && *d.Recover != *tc.r.Recover) {
			t.Errorf("DecodeJoinResult(%s) = %+v, %v", tc.json, d, err)
		}
	}
	if d, err := DecodeJoinResult(nil); err != nil || d.Epoch != "" || d.Recover != nil {
		t.Errorf("DecodeJoinResult(empty) = %+v, %v", d, err)
	}
	if _, err := DecodeJoinResult([]byte("{")); !errors.Is(err, ErrMalformed) {
		t.Errorf("DecodeJoinResult({) = %v, want ErrMalformed", err)
	}
}
