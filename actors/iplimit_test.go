package actors

import (
	"fmt"
	"net/http"
	"testing"
)

func TestIPTableKeys(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.7:1234", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7/32"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
	} {
		k, ok := keyOf(tc.remote)
		if !ok || k.String() != tc.want {
			t.Errorf("keyOf(%q) = %v %v, want %s", tc.remote, k, ok, tc.want)
		}
	}
	if _, ok := keyOf("@unix"); ok {
		t.Error("a non-IP address got a key")
	}
	// Two addresses of one /64 share its count.
	tab := newIPTable(0, 0, 1)
	if _, ref := tab.take("[2001:db8::1]:1"); ref != nil {
		t.Fatal(ref.err)
	}
	if _, ref := tab.take("[2001:db8::2]:1"); ref == nil || ref.status != http.StatusTooManyRequests {
		t.Fatalf("second address of the /64: %+v, want 429", ref)
	}
}

// TestIPTableBounded: the table holds at most maxIPEntries addresses;
// when all are in use a new one is refused, and once some are idle they
// are forgotten to make room.
func TestIPTableBounded(t *testing.T) {
	tab := newIPTable(0, 0, 10)
	keys := make([]ipKey, 0, maxIPEntries)
	for i := range maxIPEntries {
		k, ref := tab.take(fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&0xff, i&0xff))
		if ref != nil {
			t.Fatalf("address %d: %v", i, ref.err)
		}
		keys = append(keys, k)
	}
	_, ref := tab.take("192.0.2.1:1")
	if ref == nil || ref.reason != "ip_table_full" {
		t.Fatalf("a new address in a full table: %+v, want ip_table_full", ref)
	}
	tab.release(keys[0])
	if _, ref := tab.take("192.0.2.1:1"); ref != nil {
		t.Fatalf("after one address went idle: %v", ref.err)
	}
	if n := len(tab.m); n > maxIPEntries {
		t.Fatalf("table grew to %d entries", n)
	}
}
