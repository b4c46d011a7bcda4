package cluster

import "testing"

// The rule that tells which side of a split rejoins.
func TestOutranks(t *testing.T) {
	for _, tc := range []struct {
		theirs, mine []string
		want         bool
	}{
		{[]string{"n1-a", "n2-b"}, []string{"n3-c"}, true},           // the majority keeps its IDs
		{[]string{"n3-c"}, []string{"n1-a", "n2-b"}, false},          // the minority rejoins, not us
		{[]string{"n1-a"}, []string{"n2-b"}, true},                   // a tie: the lower NodeID stays
		{[]string{"n2-b"}, []string{"n1-a"}, false},                  //
		{[]string{"chat@n1-a", "chat@n2-b"}, []string{"n3-c"}, true}, // etcd's prefixed IDs
		{nil, []string{"n1-a"}, false},                               // a node that lists nobody yet
	} {
		if got := outranks(tc.theirs, tc.mine); got != tc.want {
			t.Errorf("outranks(%v, %v) = %v, want %v", tc.theirs, tc.mine, got, tc.want)
		}
	}
	if !sameMember("chat@n1-a", "n1-a") || sameMember("chat@n1-ab", "n1-a") || !containsMember([]string{"x", "n1-a"}, "n1-a") {
		t.Error("sameMember/containsMember")
	}
}
