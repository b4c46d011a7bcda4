package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is the parent's handle on the server process: it starts it,
// SIGKILLs it and starts it again on the same address and bolt file.
type child struct {
	exe     string
	addr    string // the server's listen address, the same across restarts
	control string // its control API's address
	db      string
	otlp    string // where its spans go (OTLP/HTTP)
	// A cluster node (-cluster): its ID, cluster Bind address and the
	// other nodes'; node 0 is the single server.
	node    int
	bind    string
	seeds   []string
	maxConn int
	history int
	logPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// freeAddr returns a loopback address free right now.
func freeAddr() (string, error) { return freeAddrOn("127.0.0.1") }

// freeAddrOn returns an address of ip free right now.
func freeAddrOn(ip string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// freeBind returns an address of ip whose port, and the next one on
// every interface, are free right now and not in taken: a cluster node's
// Bind (protoactor's automanaged provider serves its health on the port
// after it, on every interface). It adds both to taken.
func freeBind(ip string, taken map[int]bool) (string, error) {
	for range 50 {
		a, err := freeAddrOn("0.0.0.0")
		if err != nil {
			return "", err
		}
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		if taken[p] || taken[p+1] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(p+1)))
		if err != nil {
			continue
		}
		ln.Close()
		taken[p], taken[p+1] = true, true
		return net.JoinHostPort(ip, port), nil
	}
	return "", fmt.Errorf("no two free ports in a row on %s", ip)
}

// freeAddrNotIn is freeAddrOn with a port not in taken, which it adds.
func freeAddrNotIn(ip string, taken map[int]bool) (string, error) {
	for range 50 {
		a, err := freeAddrOn(ip)
		if err != nil {
			return "", err
		}
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		if !taken[p] {
			taken[p] = true
			return a, nil
		}
	}
	return "", fmt.Errorf("no free port on %s", ip)
}

// start runs the server and waits until its control API answers.
func (c *child) start(ctx context.Context) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.exe)
	cmd.Env = append(os.Environ(), envRole+"=server", envAddr+"="+c.addr, envControl+"="+c.control,
		envDB+"="+c.db, envMaxConn+"="+strconv.Itoa(c.maxConn), envHistory+"="+strconv.Itoa(c.history), envOTLP+"="+c.otlp)
	if c.node > 0 {
		cmd.Env = append(cmd.Env, envNode+"="+strconv.Itoa(c.node), envBind+"="+c.bind, envSeeds+"="+strings.Join(c.seeds, ","))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the soak itself die (a test timeout), its server goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	c.cmd, c.done = cmd, done
	for {
		if _, err := c.stats(ctx, false); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("server exited at start: %s", c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("server did not come up: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill SIGKILLs the server and waits for it to be gone.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop ends the server gracefully (SIGTERM), SIGKILLing it after grace.
func (c *child) stop(grace time.Duration) {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.kill()
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// ctlClient asks the servers' control APIs. Its bound is generous: on a
// busy machine (the CI suite beside the soak) a server can take seconds
// to answer, which is slowness, not a failure (a server that is not up
// refuses at once).
var ctlClient = &http.Client{Timeout: 30 * time.Second}

// stats asks the server for its figures; with gc it collects garbage and
// returns memory to the OS first, so that RSS figures compare.
func (c *child) stats(ctx context.Context, gc bool) (serverStats, error) {
	var s serverStats
	url := "http://" + c.control + "/stats"
	if gc {
		url += "?gc=1"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := ctlClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (c *child) post(ctx context.Context, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.control+path, nil)
	resp, err := ctlClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

// memory is a process's resident set: the whole (VmRSS), its anonymous
// part (heap, stacks) and its file-backed part (the bolt file's mapping,
// the binary).
type memory struct{ rss, anon, file int64 }

// rss returns the server's resident set, from /proc.
func (c *child) rss() (memory, error) { return rssOf(c.pid()) }

func rssOf(pid int) (memory, error) {
	var m memory
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "RssAnon":
			dst = &m.anon
		case "RssFile":
			dst = &m.file
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return m, err
		}
		*dst = kb << 10
	}
	if m.rss == 0 {
		return m, errors.New("no VmRSS")
	}
	return m, nil
}

// logTail is the end of the server's log, for error messages.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
