package actors

import (
	"testing"
	"unsafe"
)

// link is padded to exactly 512 bytes so that, allocated from that size
// class, it starts on a cache line and its field groups fall on the lines
// they were packed for. A field added or removed must adjust the padding.
func TestLinkFillsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(link{}); n != 512 {
		t.Fatalf("link is %d bytes; adjust its padding to make it 512", n)
	}
}
