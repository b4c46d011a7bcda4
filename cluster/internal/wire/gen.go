// Package wire holds the protobuf messages marmot nodes exchange.
package wire

//go:generate protoc --go_out=. --go_opt=paths=source_relative wire.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative history.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative presence.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative session.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative session2.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative member_probe.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative room_restart.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative publish_key.proto
