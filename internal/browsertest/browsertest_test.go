package browsertest

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func encode(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestNonBlank(t *testing.T) {
	blank := image.NewRGBA(image.Rect(0, 0, 200, 100))
	for i := range blank.Pix {
		blank.Pix[i] = 0xff
	}
	if err := NonBlank(encode(t, blank)); !errors.Is(err, ErrBlank) {
		t.Fatalf("white image: %v, want ErrBlank", err)
	}
	// A few dots of one colour are still blank.
	blank.Set(10, 10, color.RGBA{255, 0, 0, 255})
	if err := NonBlank(encode(t, blank)); !errors.Is(err, ErrBlank) {
		t.Fatalf("white image with a dot: %v, want ErrBlank", err)
	}
	busy := image.NewRGBA(image.Rect(0, 0, 200, 100))
	for y := 0; y < 100; y++ {
		for x := 0; x < 200; x++ {
			busy.Set(x, y, color.RGBA{uint8(x), uint8(y * 2), uint8(x ^ y), 255})
		}
	}
	if err := NonBlank(encode(t, busy)); err != nil {
		t.Fatalf("busy image: %v", err)
	}
	if err := NonBlank([]byte("not a png")); err == nil || errors.Is(err, ErrBlank) {
		t.Fatalf("garbage: %v", err)
	}
}

// TestBrowser starts Chromium, opens a page, evaluates, waits and takes a
// screenshot; everything it started is gone when it ends (goleak).
func TestBrowser(t *testing.T) {
	b := New(t)
	p := b.Open(t, `data:text/html,<h1 style="color:red">browsertest</h1><input id="i"><script>setTimeout(() => { window.later = 42 }, 10)</script>`)
	p.WaitFor(`window.later === 42`)
	var n int
	p.MustEval(`Promise.resolve(document.querySelectorAll('h1').length)`, &n)
	if n != 1 {
		t.Fatalf("h1 count %d", n)
	}
	p.SetValue("#i", "typed")
	var v string
	p.MustEval(`document.getElementById('i').value`, &v)
	if v != "typed" {
		t.Fatalf("input value %q", v)
	}
	if err := p.Eval(`Promise.reject(new Error('nope'))`, nil); err == nil {
		t.Fatal("a rejected promise is not an error")
	}
	p.Screenshot("browsertest.png")
}
