package chaos_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/marmotws/marmot/chaos"
)

// A proxy between a client and an echo server: 50ms of latency each way,
// then a reset that the client sees as ECONNRESET.
func ExampleProxy() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() { // the upstream: echoes one connection
		if c, err := ln.Accept(); err == nil {
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()

	p, err := chaos.NewProxy("127.0.0.1:0", ln.Addr().String(), chaos.Options{})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	_ = p.Set(chaos.Faults{Latency: 50 * time.Millisecond})

	c, _ := net.Dial("tcp", p.Addr().String())
	defer c.Close()
	start := time.Now()
	_, _ = c.Write([]byte("hello"))
	buf := make([]byte, 5)
	_, _ = io.ReadFull(c, buf)
	fmt.Println(string(buf), time.Since(start) >= 100*time.Millisecond)

	p.ResetAll()
	_, err = c.Read(buf)
	fmt.Println(errors.Is(err, syscall.ECONNRESET), p.Counts().Resets)
	// Output:
	// hello true
	// true 1
}
