package marmot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"strings"

	"github.com/marmotws/marmot"
)

// A server with its dashboard at /dashboard/, for loopback peers only.
func ExampleNewDashboard() {
	srv, err := marmot.NewServer(marmot.ServerConfig{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	d := marmot.NewDashboard(srv, marmot.DashboardOptions{LoopbackOnly: true})
	srv.Handle("/dashboard/", http.StripPrefix("/dashboard", d))
	if err := srv.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(context.Background())

	// Open http://127.0.0.1:PORT/dashboard/ in a browser; its data:
	base := strings.Replace(strings.TrimSuffix(srv.URL(), "/websocket"), "ws://", "http://", 1)
	res, err := http.Get(base + "/dashboard/api/snapshot")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	var snap struct {
		Stats struct{ ClientCount int }
	}
	_ = json.NewDecoder(res.Body).Decode(&snap)
	fmt.Println(res.StatusCode, snap.Stats.ClientCount)
	// Output: 200 0
}
