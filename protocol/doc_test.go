package protocol

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestProtocolDocVectors keeps docs/PROTOCOL.md honest: every golden vector
// must appear there, the binary ones as a ```hex block (bytes, then an
// optional "# comment" per line) and the JSON ones as a line of a ```json
// block. Every ```hex block in the document must also decode.
func TestProtocolDocVectors(t *testing.T) {
	f, err := os.Open("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatalf("the protocol document is part of the package's contract: %v", err)
	}
	defer f.Close()

	hexBlocks := map[string]bool{}
	jsonLines := map[string]bool{}
	var block string // language of the fenced block we are in, or ""
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case block == "" && strings.HasPrefix(line, "```"):
			block = strings.TrimPrefix(line, "```")
			if block == "" {
				block = "text"
			}
			cur.Reset()
		case block != "" && line == "```":
			if block == "hex" {
				hexBlocks[cur.String()] = true
			}
			block = ""
		case block == "hex":
			data, _, _ := strings.Cut(line, "#")
			cur.WriteString(strings.Join(strings.Fields(data), ""))
		case block == "json":
			jsonLines[line] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range golden {
		if !hexBlocks[strings.ReplaceAll(tc.bin, " ", "")] {
			t.Errorf("%s: binary vector %s missing from PROTOCOL.md", tc.name, tc.bin)
		}
		if !jsonLines[tc.json] {
			t.Errorf("%s: JSON vector %s missing from PROTOCOL.md", tc.name, tc.json)
		}
	}
	// The document's counter-examples, with the class it states for them.
	rejected := map[string]error{
		`{"v":1,"kind":"request","id":7.0,"name":"sum"}`:            ErrMalformed,
		`{"v":1,"kind":"reply","id":9007199254740992}`:              ErrMalformed,
		`{"v":1,"kind":"data","nmae":"chat"}`:                       ErrMalformed,
		`{"v":1,"kind":"data","payload":"hi","payload_b64":"aGk="}`: ErrMalformed,
		`{"v":1,"kind":"data","name":null}`:                         ErrMalformed,
		`{"v":1,"kind":"Data"}`:                                     ErrUnknownKind,
		`{"v":2,"kind":"data"}`:                                     ErrUnsupportedVersion,
		`{"kind":"data"}`:                                           ErrMalformed,
	}
	for line := range jsonLines {
		var e Envelope
		err := JSON.Decode([]byte(line), &e)
		if want, ok := rejected[line]; ok {
			if !errors.Is(err, want) {
				t.Errorf("PROTOCOL.md counter-example %s: got %v, want %v", line, err, want)
			}
			delete(rejected, line)
		} else if err != nil {
			t.Errorf("PROTOCOL.md example %s: %v", line, err)
		}
	}
	for line := range rejected {
		t.Errorf("counter-example %s missing from PROTOCOL.md", line)
	}
	for h := range hexBlocks {
		var e Envelope
		if err := Binary.Decode(unhex(t, h), &e); err != nil {
			t.Errorf("PROTOCOL.md example %s: %v", h, err)
		}
	}
}
