package marmot_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/marmotws/marmot"
)

// The memory benchmarks act by message, through the server's actor, and
// wait only for the last one (the ServerActor forwards in order, the room
// handles in order): Server.Join and Publish wait on a protoactor future
// each, whose process-registry entries grow the registry's maps to a
// plateau of about 9 MB over the first ~100,000 calls, which would be
// counted here as if it were the room's.

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkRoomMemberMemory reports the server's heap per room member:
// what joining costs once the connections exist (the room's member entry
// and the connection's record of its rooms). Every iteration joins the
// same connections to a fresh room. Run it with -benchtime=3x or so: each
// iteration is one measurement.
func BenchmarkRoomMemberMemory(b *testing.B) {
	const members = 1000
	ids := make(chan marmot.ClientID, members)
	s := startServer(b, marmot.ServerConfig{RoomIdle: time.Hour, ServerEvents: marmot.ServerEvents{
		OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID },
	}})
	all := make([]marmot.ClientID, members)
	for i := range all {
		dial(b, s.URL(), "marmot.v1")
		all[i] = recv(b, ids, "connection")
	}
	var total float64
	b.ResetTimer()
	for i := range b.N {
		room := fmt.Sprintf("room-%d", i)
		before := heapInUse()
		root := s.ActorSystem().Root
		for _, id := range all[:members-1] {
			root.Send(s.PID(), &marmot.JoinRoom{ID: id, Room: room})
		}
		res, err := root.RequestFuture(s.PID(), &marmot.JoinRoom{ID: all[members-1], Room: room}, waitTimeout).Result()
		if ack, ok := res.(*marmot.Ack); err != nil || !ok || ack.Err != nil {
			b.Fatalf("join: %#v, %v", res, err)
		}
		if n := len(s.Members(room)); n != members {
			b.Fatalf("%d members, want %d", n, members)
		}
		total += float64(int64(heapInUse())-int64(before)) / members
	}
	b.ReportMetric(total/float64(b.N), "B/member")
}

// BenchmarkRoomHistoryMemory reports the server's heap per history entry
// of a 64-byte message (the payload included), in a room keeping 10,000.
// Each iteration fills a fresh room's history; one measurement each.
func BenchmarkRoomHistoryMemory(b *testing.B) {
	const entries, size = 10000, 64
	ids := make(chan marmot.ClientID, 1)
	s := startServer(b, marmot.ServerConfig{RoomIdle: time.Hour, RoomHistory: marmot.HistoryConfig{Size: entries},
		ServerEvents: marmot.ServerEvents{OnClientConnected: func(info marmot.ClientInfo) { ids <- info.ID }}})
	dial(b, s.URL(), "marmot.v1")
	id := recv(b, ids, "connection")
	payload := make([]byte, size)
	var total float64
	b.ResetTimer()
	for i := range b.N {
		// The room lives on empty (RoomIdle), keeping what is published.
		room := fmt.Sprintf("history-%d", i)
		if err := s.Join(id, room); err != nil {
			b.Fatal(err)
		}
		if err := s.Leave(id, room); err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		root := s.ActorSystem().Root
		for range entries - 1 {
			root.Send(s.PID(), &marmot.Publish{Room: room, Data: payload})
		}
		res, err := root.RequestFuture(s.PID(), &marmot.Publish{Room: room, Data: payload}, waitTimeout).Result()
		if ack, ok := res.(*marmot.Ack); err != nil || !ok || ack.Err != nil {
			b.Fatalf("publish: %#v, %v", res, err)
		}
		total += float64(int64(heapInUse())-int64(before)) / entries
	}
	b.ReportMetric(total/float64(b.N), "B/entry")
	b.ReportMetric(total/float64(b.N)-size, "B/entry-overhead")
}
