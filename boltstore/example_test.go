package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/marmotws/marmot"
	"github.com/marmotws/marmot/boltstore"
)

// A server whose rooms keep their history in a bbolt file: a room created
// again, after its idle end or a restart on the same file, continues its
// epoch and offsets, so reconnecting clients recover across it.
func Example() {
	dir, _ := os.MkdirTemp("", "marmot")
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "rooms.db"), nil)
	if err != nil {
		fmt.Println(err) // a bad path, a corrupt file, or one locked by another process
		return
	}
	defer store.Close() // after Stop, when no room writes any more

	s, err := marmot.NewServer(marmot.ServerConfig{
		Addr:        "127.0.0.1:0",
		RoomHistory: marmot.HistoryConfig{Size: 1000, TTL: time.Hour, Backend: store},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	// ... clients join rooms and publish ...
	fmt.Println(s.Stop(context.Background()))
	// Output: <nil>
}
