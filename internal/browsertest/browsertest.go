// Package browsertest runs tests in a real headless Chromium driven by
// chromedp: every browser test of marmot (marmot.js, the dashboard) opens
// its pages through it.
//
// The browser is Debian's chromium at /usr/bin/chromium (or $MARMOT_CHROMIUM),
// started with --headless --no-sandbox --disable-gpu. When it is missing
// the test is skipped with a clear message, except in CI (CI set), where a
// missing browser is a failure: .ci/run installs it.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// DefaultPath is where Debian's chromium package puts the browser.
const DefaultPath = "/usr/bin/chromium"

// Timeout bounds every wait on the page; it only fires when a test is
// already failing, so it is generous for a busy machine running -race.
const Timeout = 60 * time.Second

// ExecPath returns the Chromium to run: $MARMOT_CHROMIUM, DefaultPath, or
// chromium on PATH; "" when there is none.
func ExecPath() string {
	if p := os.Getenv("MARMOT_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat(DefaultPath); err == nil {
		return DefaultPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// Browser is one headless Chromium process for one test.
type Browser struct {
	ctx    context.Context // the browser's first tab, kept open
	cancel func()
}

// New starts Chromium for t and stops it when t ends. It skips t when no
// Chromium is installed, unless CI is set (then it fails).
func New(t testing.TB) *Browser {
	t.Helper()
	path := ExecPath()
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("browsertest: chromium is not installed (.ci/run should have installed it: apt-get install -y chromium)")
		}
		t.Skip("browsertest: chromium not installed (apt-get install chromium, or set MARMOT_CHROMIUM); skipping browser test")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		bcancel()
		acancel()
		t.Fatalf("browsertest: start %s: %v", path, err)
	}
	b := &Browser{ctx: bctx, cancel: func() { bcancel(); acancel() }}
	t.Cleanup(b.cancel)
	return b
}

// Page is one tab. Its console output and uncaught exceptions go to the
// test's log.
type Page struct {
	t      testing.TB
	ctx    context.Context
	cancel func()

	mu   sync.Mutex
	errs []string
}

// Open opens url in a new tab and waits for it to load. The tab closes
// when t ends.
func (b *Browser) Open(t testing.TB, url string) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{t: t, ctx: ctx, cancel: cancel}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`))
			}
			t.Logf("browser console.%s: %s", ev.Type, strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			msg := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
			p.mu.Lock()
			p.errs = append(p.errs, msg)
			p.mu.Unlock()
			t.Logf("browser exception: %s", msg)
		}
	})
	t.Cleanup(cancel)
	if err != nil {
		t.Fatalf("browsertest: open a tab: %v", err)
	}
	if err := p.run(chromedp.Navigate(url)); err != nil {
		t.Fatalf("browsertest: open %s: %v", url, err)
	}
	return p
}

// Context is the tab's chromedp context, for actions this package lacks.
func (p *Page) Context() context.Context { return p.ctx }

// Exceptions returns the uncaught exceptions the page threw so far.
func (p *Page) Exceptions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

func (p *Page) run(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func get[T any](p *Page, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, Timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// Eval evaluates the JavaScript expression expr in the page, waits for it
// when it is a Promise, and stores its JSON value in out (nil: ignore). A
// rejected Promise or a thrown error is returned as an error.
func (p *Page) Eval(expr string, out any) error {
	raw, err := get(p, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	return jsonUnmarshal(raw, out)
}

// MustEval is Eval that fails the test on error.
func (p *Page) MustEval(expr string, out any) {
	p.t.Helper()
	if err := p.Eval(expr, out); err != nil {
		p.t.Fatalf("browsertest: eval %s: %v", short(expr), err)
	}
}

// WaitFor waits until the JavaScript expression expr is truthy in the
// page (checked on every animation frame and DOM change, bounded by Timeout).
func (p *Page) WaitFor(expr string) {
	p.t.Helper()
	if _, err := get(p, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(Timeout))); err != nil {
		p.t.Fatalf("browsertest: waiting for %s: %v", short(expr), err)
	}
}

// Click clicks the first element matching the CSS selector sel.
func (p *Page) Click(sel string) {
	p.t.Helper()
	if err := p.run(chromedp.Click(chromedp.CSS(sel))); err != nil {
		p.t.Fatalf("browsertest: click %s: %v", sel, err)
	}
}

// SetValue sets the value of the input matching the CSS selector sel.
func (p *Page) SetValue(sel, value string) {
	p.t.Helper()
	if err := p.run(chromedp.SetValue(chromedp.CSS(sel), value)); err != nil {
		p.t.Fatalf("browsertest: set %s: %v", sel, err)
	}
}

// Screenshot saves a PNG of the whole page to path (in the directory of
// $MARMOT_SCREENSHOTS when set, else path as given), checks that it is not
// blank, and returns where it went.
func (p *Page) Screenshot(name string) string {
	p.t.Helper()
	buf, err := get(p, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("browsertest: screenshot: %v", err)
	}
	if err := NonBlank(buf); err != nil {
		p.t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	dir := os.Getenv("MARMOT_SCREENSHOTS")
	if dir == "" {
		dir = p.t.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Fatalf("browsertest: save screenshot: %v", err)
	}
	p.t.Logf("screenshot %s (%d bytes)", path, len(buf))
	return path
}

// ErrBlank is returned by NonBlank for an image with almost no content.
var ErrBlank = errors.New("browsertest: image is blank")

// NonBlank checks that a PNG shows something: at least 8 distinct colours
// and at least 0.2 % of its pixels differing from the most common one.
func NonBlank(pngBytes []byte) error {
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		return fmt.Errorf("browsertest: not a PNG: %w", err)
	}
	return nonBlank(img)
}

func nonBlank(img image.Image) error {
	counts := map[uint32]int{}
	bnd := img.Bounds()
	total := 0
	for y := bnd.Min.Y; y < bnd.Max.Y; y += 2 {
		for x := bnd.Min.X; x < bnd.Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			counts[(r>>8)<<16|(g>>8)<<8|b>>8]++
			total++
		}
	}
	top := 0
	for _, n := range counts {
		top = max(top, n)
	}
	if len(counts) < 8 || total-top < total/500 {
		return fmt.Errorf("%w: %d colours, %d of %d sampled pixels differ from the background", ErrBlank, len(counts), total-top, total)
	}
	return nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
