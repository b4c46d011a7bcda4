package protocol

import (
	"bytes"
	"fmt"
	"testing"
)

var benchSizes = []int{64, 1024}

func benchEnvelope(size int, traced bool) *Envelope {
	e := &Envelope{Kind: KindRequest, ID: 123456, Name: "chat.send", Payload: bytes.Repeat([]byte("x"), size)}
	if traced {
		e.Meta = map[string]string{"traceparent": traceparent, "tracestate": tracestate}
	}
	return e
}

func benchCodec(b *testing.B, c Codec, run func(b *testing.B, c Codec, e *Envelope)) {
	for _, size := range benchSizes {
		for _, traced := range []bool{false, true} {
			name := fmt.Sprintf("%dB", size)
			if traced {
				name += "/meta"
			}
			b.Run(name, func(b *testing.B) { run(b, c, benchEnvelope(size, traced)) })
		}
	}
}

func benchAppend(b *testing.B, c Codec, e *Envelope) {
	dst, _ := c.Append(nil, e)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = c.Append(dst[:0], e); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, c Codec, e *Envelope) {
	msg, _ := c.Append(nil, e)
	var d Envelope
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Decode(msg, &d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBinaryAppend(b *testing.B) { benchCodec(b, Binary, benchAppend) }

func BenchmarkBinaryDecode(b *testing.B) { benchCodec(b, Binary, benchDecode) }

func BenchmarkJSONAppend(b *testing.B) { benchCodec(b, JSON, benchAppend) }

func BenchmarkJSONDecode(b *testing.B) { benchCodec(b, JSON, benchDecode) }
