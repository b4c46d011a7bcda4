package protocol_test

import (
	"errors"
	"fmt"

	"github.com/marmotws/marmot/protocol"
)

func ExampleBinary() {
	req := protocol.Envelope{Kind: protocol.KindRequest, ID: 7, Name: "sum", Payload: []byte("[1,2]")}
	frame, err := protocol.Binary.Append(nil, &req)
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", frame)

	var e protocol.Envelope
	if err := protocol.Binary.Decode(frame, &e); err != nil {
		panic(err)
	}
	fmt.Println(e.Kind, e.ID, e.Name, string(e.Payload))
	// Output:
	// 01 03 03 07 03 73 75 6d 5b 31 2c 32 5d
	// request 7 sum [1,2]
}

func ExampleJSON() {
	reply := protocol.Envelope{Kind: protocol.KindError, ID: 7, Code: 404, Payload: []byte("no such command")}
	msg, _ := protocol.JSON.Append(nil, &reply)
	fmt.Println(string(msg))

	var e protocol.Envelope
	err := protocol.JSON.Decode([]byte(`{"v":1,"kind":"request","id":7.5,"name":"sum"}`), &e)
	fmt.Println(errors.Is(err, protocol.ErrMalformed))
	// Output:
	// {"v":1,"kind":"error","id":7,"code":404,"payload":"no such command"}
	// true
}

func ExampleEnvelope() {
	// A request must carry an ID and a name; Validate (and therefore every
	// Append) refuses one without.
	e := protocol.Envelope{Kind: protocol.KindRequest, Name: "sum"}
	err := e.Validate()
	fmt.Println(errors.Is(err, protocol.ErrInvalidEnvelope), err)

	// Meta works as an OpenTelemetry propagation.MapCarrier.
	e.ID = 1
	e.Meta = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	fmt.Println(e.Validate())
	// Output:
	// true protocol: invalid envelope: request envelope without an ID
	// <nil>
}

func ExampleLookup() {
	// Pick the codec for the subprotocol negotiated in the handshake.
	for _, sub := range []string{"marmot.json.v1", ""} {
		if c, ok := protocol.Lookup(sub); ok {
			fmt.Printf("%q: envelope codec, message type %d\n", sub, c.MessageType())
		} else {
			fmt.Printf("%q: raw mode\n", sub)
		}
	}
	// Output:
	// "marmot.json.v1": envelope codec, message type 1
	// "": raw mode
}
