package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// marmot chaos proxies to its upstream and obeys its control API.
func TestChaosCLI(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() { // an echo upstream
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	p := start(t, "chaos", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--upstream", up.Addr().String(), "--latency", "10ms")
	proxyAddr := strings.Fields(strings.TrimPrefix(p.stdout.expect(t, "chaos proxy on "), "chaos proxy on "))[0]
	control := strings.TrimPrefix(p.stdout.expect(t, "chaos control on "), "chaos control on ")

	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(guard))
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo %q %v", buf, err)
	}
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, control+strings.TrimPrefix(path, "/"), strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := do("GET", "/", ""); code != 200 || !strings.Contains(body, `"latency":"10ms"`) || !strings.Contains(body, `"bytes_up":2`) {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body := do("PUT", "/faults", `{"jitter":"-5ms"}`); code != 400 || !strings.Contains(body, "jitter -5ms is negative") {
		t.Fatalf("bad faults: %d %s", code, body)
	}
	if code, body := do("POST", "/reset", ""); code != 200 || !strings.Contains(body, `"reset":1`) {
		t.Fatalf("reset: %d %s", code, body)
	}
	if _, err := c.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after reset: %v", err)
	}
	p.stop(t)
}

func TestChaosCLIUsage(t *testing.T) {
	p := start(t, "chaos", "--listen", "127.0.0.1:0")
	if code := p.wait(t); code != exitUsage {
		t.Fatalf("without --upstream: exit %d", code)
	}
	p = start(t, "chaos", "--upstream", "127.0.0.1:1", "--latency", "-1s")
	if code := p.wait(t); code != exitUsage {
		t.Fatalf("negative latency: exit %d", code)
	}
}
