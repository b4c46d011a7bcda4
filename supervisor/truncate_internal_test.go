package supervisor

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{in: "", n: 4, want: ""},
		{in: "abc", n: 4, want: "abc"},
		{in: "abcd", n: 4, want: "abcd"},
		{in: "abcde", n: 4, want: "abcd"},
		{in: "aé", n: 2, want: "a"},   // é is 2 bytes: not split
		{in: "a€b", n: 3, want: "a"},  // € is 3 bytes
		{in: "a€b", n: 4, want: "a€"}, // exactly after €
		{in: "€€", n: 1, want: ""},    // nothing fits
		{in: strings.Repeat("x", 300), n: 256, want: strings.Repeat("x", 256)},
	}

	for _, tt := range tests {
		got := truncate(tt.in, tt.n)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
