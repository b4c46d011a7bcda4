package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress is the run's phase, drawn as a progress line every second.
type progress struct {
	total time.Duration
	mu    sync.Mutex
	phase string
	began time.Time // publishing started; zero before
}

func (p *progress) set(phase string) {
	p.mu.Lock()
	p.phase = phase
	p.mu.Unlock()
}

func (p *progress) begin() {
	p.mu.Lock()
	p.began = time.Now()
	p.mu.Unlock()
}

// run draws the line on w until the returned stop is called: in place
// (\r) on a terminal, one line every 5 s otherwise.
func (p *progress) run(w io.Writer, fl *fleet, proxy proxies) (stop func()) {
	if w == nil {
		return func() {}
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-done:
				if tty {
					fmt.Fprintln(w)
				}
				return
			case <-t.C:
			}
			if !tty && n%5 != 0 {
				continue
			}
			line := p.line(fl, proxy)
			if tty {
				fmt.Fprintf(w, "\r%-130s", line)
			} else {
				fmt.Fprintln(w, line)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func (p *progress) line(fl *fleet, proxy proxies) string {
	p.mu.Lock()
	phase, began := p.phase, p.began
	p.mu.Unlock()
	var done time.Duration
	if !began.IsZero() {
		done = min(time.Since(began), p.total)
	}
	const width = 20
	fill := int(float64(width) * float64(done) / float64(max(p.total, 1)))
	bar := strings.Repeat("#", fill) + strings.Repeat(".", width-fill)
	return fmt.Sprintf("[%s] %3ds/%ds  %-30s clients %d/%d  sent %d acked %d  received %d  proxy conns %d",
		bar, int(done.Seconds()), int(p.total.Seconds()), phase, fl.connected(), len(fl.recv),
		fl.sent.Load(), fl.acked.Load(), fl.received.Load(), proxy.conns())
}
