package progress

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestBar(t *testing.T) {
	s := Status{Step: 312, Steps: 600, Loss: 2.31, TokensPerSec: 4210.4, Elapsed: 41 * time.Second, ETA: 38 * time.Second}
	for _, c := range []struct {
		s     Status
		width int
		want  string
	}{
		{s, 20, "[==========>         ] 312/600 loss 2.3100 4,210 tok/s 00:41 ETA 00:38"},
		{Status{Step: 0, Steps: 600}, 10, "[>         ]   0/600 loss 0.0000 0 tok/s 00:00 ETA 00:00"},
		{Status{Step: 600, Steps: 600, Loss: 1.5, TokensPerSec: 1234567, Elapsed: 3725 * time.Second}, 10,
			"[==========] 600/600 loss 1.5000 1,234,567 tok/s 1:02:05 ETA 00:00"},
		{Status{Step: 7, Steps: 0}, 4, "[>   ] 7/0 loss 0.0000 0 tok/s 00:00 ETA 00:00"},
	} {
		if got := Bar(c.s, c.width); got != c.want {
			t.Errorf("Bar(%+v, %d)\n got %q\nwant %q", c.s, c.width, got, c.want)
		}
	}
}

func TestLine(t *testing.T) {
	s := Status{Step: 25, Steps: 600, Loss: 2.5, TokensPerSec: 4210, Elapsed: 41 * time.Second, ETA: 38 * time.Second, Workers: 2}
	if got, want := Line(s), "step  25/600  loss 2.5000    4210 tok/s  workers 2  elapsed 41s  eta 38s"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	s.Workers, s.LR, s.GradNorm = 0, 1e-3, 0.5
	if got, want := Line(s), "step  25/600  loss 2.5000  lr 1.00e-03  norm 0.500    4210 tok/s  elapsed 41s  eta 38s"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567", 100000: "100,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// fakeClock advances by step at every reading.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

func TestPrinterLines(t *testing.T) {
	var out bytes.Buffer
	clk := &fakeClock{t: time.Unix(0, 0), step: time.Second}
	p := New(&out, Options{Steps: 10, StartStep: 0, Every: 4,
		Terminal: func(io.Writer) bool { return false }, Now: clk.now})
	if p.Bar() {
		t.Fatal("bar on a writer that is not a terminal")
	}
	for s := int64(1); s <= 10; s++ {
		p.Update(Status{Step: s, Tokens: 100 * s, Loss: 1, Workers: 2})
		if s == 5 {
			p.Println("step 5  val loss 1.2000")
		}
	}
	p.Finish()
	// The clock reads 1 s at New and 1 s later at every update: 100 tokens/s.
	want := strings.Join([]string{
		"step  4/10  loss 1.0000     100 tok/s  workers 2  elapsed 4s  eta 6s",
		"step 5  val loss 1.2000",
		"step  8/10  loss 1.0000     100 tok/s  workers 2  elapsed 8s  eta 2s",
		"step 10/10  loss 1.0000     100 tok/s  workers 2  elapsed 10s  eta 0s",
		""}, "\n")
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestPrinterBar(t *testing.T) {
	var out bytes.Buffer
	clk := &fakeClock{t: time.Unix(0, 0), step: 40 * time.Millisecond}
	p := New(&out, Options{Steps: 4, Every: 2, BarWidth: 4,
		Terminal: func(io.Writer) bool { return true }, Now: clk.now})
	if !p.Bar() {
		t.Fatal("no bar on a terminal")
	}
	for s := int64(1); s <= 4; s++ {
		p.Update(Status{Step: s, Tokens: 10 * s, Loss: 2})
		if s == 2 {
			p.Println("eval")
		}
	}
	p.Finish()
	// Step 1 draws (nothing drawn yet); step 2 comes 40 ms later, under the 100 ms
	// redraw interval, and is drawn only after the eval line; step 3 is skipped;
	// step 4, the last, is drawn, with the rate of steps 3 and 4 over the 120 ms
	// since step 2 (the redraw after the eval line read the clock too).
	want := "\r[=>  ] 1/4 loss 2.0000 250 tok/s 00:00 ETA 00:00\x1b[K" +
		"\reval\x1b[K\n" +
		"\r[==> ] 2/4 loss 2.0000 250 tok/s 00:00 ETA 00:00\x1b[K" +
		"\r[====] 4/4 loss 2.0000 167 tok/s 00:00 ETA 00:00\x1b[K" +
		"\n"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out.String(), want)
	}
}

func TestNilPrinter(t *testing.T) {
	var p *Printer
	p.Update(Status{Step: 1})
	p.Println("x")
	p.Finish()
	q := New(nil, Options{Steps: 1})
	q.Update(Status{Step: 1})
	q.Println("x")
	q.Finish()
}

func TestClearingWriter(t *testing.T) {
	var out bytes.Buffer
	w := ClearingWriter(&out)
	io.WriteString(w, "log line\n")
	if got := out.String(); got != "\r\x1b[Klog line\n" {
		t.Errorf("got %q", got)
	}
}

// TestPrinterRateFromTokens: tokens/s is the tokens the window's steps processed, not
// a fixed number a step (a ppo step's tokens vary with its answers), counted from
// the tokens a resumed run started with.
func TestPrinterRateFromTokens(t *testing.T) {
	var out bytes.Buffer
	clk := &fakeClock{t: time.Unix(0, 0), step: time.Second}
	p := New(&out, Options{Steps: 14, StartStep: 10, StartTokens: 5000, Every: 2,
		Terminal: func(io.Writer) bool { return false }, Now: clk.now})
	tokens := int64(5000)
	for i, n := range []int64{30, 50, 400, 0} { // steps 11 to 14, 1 s apart
		tokens += n
		p.Update(Status{Step: 11 + int64(i), Tokens: tokens, Loss: 1})
	}
	// Steps 11-12: 80 tokens in 2 s; steps 13-14: 400 in 2 s.
	want := strings.Join([]string{
		"step 12/14  loss 1.0000      40 tok/s  elapsed 2s  eta 2s",
		"step 14/14  loss 1.0000     200 tok/s  elapsed 4s  eta 0s",
		""}, "\n")
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
