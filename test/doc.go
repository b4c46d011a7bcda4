// Package test holds marmot's integration, interoperability and benchmark
// tests. Everything runs over 127.0.0.1:
//
//   - interop_node_test.go talks to Node's ws package in both directions
//     (needs node and "npm ci --prefix test/interop"; MARMOT_SKIP_NODE=1
//     skips it instead of failing);
//   - interop_coder_test.go uses github.com/coder/websocket as an
//     independent Go peer, raw and with the marmot.json.v1 envelope written
//     by hand;
//   - bench_test.go compares marmot with an idiomatic gorilla/websocket
//     server (baseline_gorilla_test.go), loaded by coder/websocket clients so
//     that no benchmark shares code between server and client.
//
// The package has no non-test code; this file only documents it.
package test
