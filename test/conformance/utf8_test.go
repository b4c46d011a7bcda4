package conformance

import (
	"fmt"
	"unicode/utf8"
)

const (
	helloUTF8 = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!"
	kosme     = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // κόσμε
)

func utf8Cases() []tcase {
	invalid := kosme + "\xed\xa0\x80" + "edited"      // a UTF-16 surrogate inside
	p1, p2, p3 := kosme, "\xf4\x90\x80\x80", "edited" // p2 encodes U+110000
	whole := p1 + p2 + p3
	cs := []tcase{
		echoes("6.1.1", "text message of length 0", opText, []byte{}, text("")),
		echoes("6.1.2", "text message in 3 fragments, each of length 0", opText, []byte{},
			frag(opText, nil), cont(false, nil), cont(true, nil)),
		echoes("6.1.3", "text message in 3 fragments, first and last of length 0", opText, []byte("middle frame payload"),
			frag(opText, nil), cont(false, []byte("middle frame payload")), cont(true, nil)),
		echoes("6.2.1", "valid UTF-8 text message in one fragment", opText, []byte(helloUTF8), text(helloUTF8)),
		echoes("6.2.2", "valid UTF-8 text message in 2 fragments, split on a code point boundary", opText, []byte(helloUTF8),
			frag(opText, []byte(helloUTF8[:15])), cont(true, []byte(helloUTF8[15:]))),
		echoes("6.2.3", "valid UTF-8 text message in 1-octet fragments (frames end inside code points)", opText, []byte(helloUTF8),
			octets(opText, []byte(helloUTF8))...),
		echoes("6.2.4", "valid UTF-8 text message (κόσμε) in 1-octet fragments", opText, []byte(kosme),
			octets(opText, []byte(kosme))...),
		fails("6.3.1", "invalid UTF-8 text message, unfragmented", 1007, text(invalid)),
		fails("6.3.2", "invalid UTF-8 text message in 1-octet fragments", 1007, octets(opText, []byte(invalid))...),
		failFast("6.4.1", "invalid UTF-8 text message in 3 fragments; the 2nd makes it invalid (U+110000)", p1, p2, p3),
		failFast("6.4.2", "as 6.4.1, the 2nd fragment being just the octet that makes it invalid", whole[:12], whole[12:13], whole[13:]),
		oneFrameChops("6.4.3", "as 6.4.1, but one frame written in 3 chops", p1, p2, p3),
		oneFrameChops("6.4.4", "as 6.4.2, but one frame written in 3 chops", whole[:12], whole[12:13], whole[13:]),
	}
	for i, g := range utf8Sequences() {
		for j, s := range g.seqs {
			id := fmt.Sprintf("6.%d.%d", i+5, j+1)
			desc := fmt.Sprintf("%s: 0x%x", g.title, s)
			if utf8.ValidString(s) {
				cs = append(cs, echoes(id, "valid UTF-8, "+desc, opText, []byte(s), text(s)))
			} else {
				cs = append(cs, fails(id, "invalid UTF-8, "+desc, 1007, text(s)))
			}
		}
	}
	return cs
}

// failFast sends a text message in three fragments whose second makes it
// invalid UTF-8, with a ping behind that fragment to learn whether marmot
// fails the connection at once (fail-fast, optional) or at the end.
func failFast(id, desc, p1, p2, p3 string) tcase {
	return onWire(id, desc, "close 1007 (fail-fast optional)", func(p *peer) {
		p.send(frag(opText, []byte(p1)), cont(false, []byte(p2)), ping("fail fast?"))
		f := p.next("a pong or a close frame")
		if f.op == opClose {
			p.r.note("fails fast: yes")
			p.checkClose(f, 1007)
			return
		}
		if f.op != opPong || string(f.payload) != "fail fast?" {
			p.r.fatalf("got %s, want a pong or close 1007", f)
		}
		p.r.note("fails fast: no")
		p.send(cont(true, []byte(p3)))
		p.wantClose(1007)
	})
}

// oneFrameChops writes an invalid UTF-8 text message as one frame, in three
// writes split where the parts meet.
func oneFrameChops(id, desc, p1, p2, p3 string) tcase {
	return onWire(id, desc, "close 1007", func(p *peer) {
		b := p.encode([]frame{text(p1 + p2 + p3)})
		h := len(b) - len(p1+p2+p3)
		p.write(b[:h+len(p1)])
		p.write(b[h+len(p1) : h+len(p1+p2)])
		p.write(b[h+len(p1+p2):])
		p.wantClose(1007)
	})
}

type utf8Group struct {
	title string
	seqs  []string
}

// utf8Sequences are Autobahn's cases 6.5 to 6.23, in its order: the test
// sequences of Markus Kuhn's UTF-8-test.txt. Whether each must be echoed or
// fail the connection is what utf8.ValidString says (Go follows RFC 3629:
// no surrogates, nothing above U+10FFFF, no overlong forms).
func utf8Sequences() []utf8Group {
	var prefixes []string
	for i := 1; i <= len(kosme); i++ {
		prefixes = append(prefixes, kosme[:i])
	}
	var continuations []byte
	for b := 0x80; b < 0xbf; b++ {
		continuations = append(continuations, byte(b))
	}
	var lonely []string
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for b := r[0]; b < r[1]; b++ {
			s = append(s, byte(b), 0x20)
		}
		lonely = append(lonely, string(s))
	}
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	var concat string
	for _, s := range missing {
		concat += s
	}
	nonChars := []string{"\xef\xbf\xbe", "\xef\xbf\xbf"}
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // above U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				zz := string([]byte{z1, z2, 0xbf, z3})
				if zz != "\xf0\x8f\xbf\xbe" && zz != "\xf0\x8f\xbf\xbf" { // overlong
					nonChars = append(nonChars, zz)
				}
			}
		}
	}
	return []utf8Group{
		{"some valid UTF-8 sequences", []string{"hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", kosme}},
		{"a prefix of a valid multi-byte string", prefixes},
		{"first possible sequence of a length", []string{"\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"}},
		{"first possible sequence of length 5/6 (invalid code points)", []string{"\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"}},
		{"last possible sequence of a length", []string{"\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"}},
		{"last possible sequence of length 4/5/6 (invalid code points)", []string{"\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf"}},
		{"other boundary conditions", []string{"\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80"}},
		{"unexpected continuation bytes", []string{"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", string(continuations)}},
		{"lonely start characters", lonely},
		{"sequence with the last continuation byte missing", missing},
		{"concatenation of incomplete sequences", []string{concat}},
		{"impossible bytes", []string{"\xfe", "\xff", "\xfe\xfe\xff\xff"}},
		{"overlong ASCII character", []string{"\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"}},
		{"maximum overlong sequence", []string{"\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"}},
		{"overlong NUL", []string{"\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"}},
		{"single UTF-16 surrogate", []string{"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"}},
		{"paired UTF-16 surrogates", []string{"\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
			"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"}},
		{"non-character code point", nonChars},
		{"Unicode special", []string{"\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf"}},
	}
}
