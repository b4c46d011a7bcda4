package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// httpSession is one client of marmot's HTTP fallback transport
// (docs/HTTP.md), written here from the protocol document rather than
// taken from internal/httpconn, so that the load tool and the server share
// no bugs. One message is one record; a write is one send request, a read
// takes the next record of the last poll answer, polling when there is
// none.
type httpSession struct {
	hc   *http.Client
	base string // endpoint URL with ?session=ID

	seq uint64 // the writer's: the next record's number

	ack     uint64 // the reader's: the last record taken
	pending [][]byte
}

// openHTTP opens a session at wsURL (ws:// becomes http://).
func openHTTP(ctx context.Context, hc *http.Client, wsURL string) (*httpSession, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
	q := u.Query()
	q.Set("transport", "http")
	open := *u
	open.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, open.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("open: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var reply struct{ Session string }
	if err := json.Unmarshal(body, &reply); err != nil || reply.Session == "" {
		return nil, fmt.Errorf("open: bad answer %q", body)
	}
	q = u.Query()
	q.Set("session", reply.Session)
	u.RawQuery = q.Encode()
	return &httpSession{hc: hc, base: u.String(), seq: 1}, nil
}

func record(typ byte, p []byte) []byte {
	b := make([]byte, 5, 5+len(p))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	return append(b, p...)
}

func (s *httpSession) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"&seq="+strconv.FormatUint(s.seq, 10), bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("send: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	s.seq++
	return nil
}

// write sends p as one binary record.
func (s *httpSession) write(ctx context.Context, p []byte) error { return s.post(ctx, record(2, p)) }

// read returns the next message.
func (s *httpSession) read(ctx context.Context) ([]byte, error) {
	for len(s.pending) == 0 {
		if err := s.poll(ctx); err != nil {
			return nil, err
		}
	}
	p := s.pending[0]
	s.pending = s.pending[1:]
	s.ack++
	return p, nil
}

func (s *httpSession) poll(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"&ack="+strconv.FormatUint(s.ack, 10), nil)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("poll: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	first, err := strconv.ParseUint(resp.Header.Get("X-Marmot-Seq"), 10, 64)
	if err != nil || first != s.ack+1 {
		return fmt.Errorf("poll: records from %q, want %d", resp.Header.Get("X-Marmot-Seq"), s.ack+1)
	}
	for len(body) > 0 {
		if len(body) < 5 {
			return errors.New("poll: cut record")
		}
		n := int(binary.BigEndian.Uint32(body[1:5]))
		if len(body)-5 < n {
			return errors.New("poll: cut record")
		}
		if body[0] == 8 {
			return errors.New("poll: the server closed the session")
		}
		s.pending = append(s.pending, body[5:5+n])
		body = body[5+n:]
	}
	return nil
}

// close sends a close record (1000).
func (s *httpSession) close(ctx context.Context) error {
	return s.post(ctx, record(8, []byte{0x03, 0xe8}))
}
