package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Status is what one progress line or bar shows.
type Status struct {
	Step, Steps int64 // steps applied, and the run's last step
	// Tokens is the number of tokens the run's steps up to Step processed, over the
	// global batch: tokens/s is reckoned from it.
	Tokens       int64
	Loss         float64
	TokensPerSec float64
	Elapsed      time.Duration // since the run (or this resumed part of it) began
	ETA          time.Duration // estimated time to the last step; 0 if unknown
	// Optional, shown in plain lines only when set.
	LR, GradNorm float64
	Workers      int // ring members training
}

// Line formats s as a plain progress line (no newline), its step padded to the
// width of Steps so that lines align:
//
//	step  312/600  loss 2.3100  lr 9.66e-04  norm 0.412    4210 tok/s  workers 2  elapsed 41s  eta 38s
func Line(s Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %*d/%d  loss %.4f", digits(s.Steps), s.Step, s.Steps, s.Loss)
	if s.LR > 0 {
		fmt.Fprintf(&b, "  lr %.2e  norm %.3f", s.LR, s.GradNorm)
	}
	fmt.Fprintf(&b, "  %6.0f tok/s", s.TokensPerSec)
	if s.Workers > 0 {
		fmt.Fprintf(&b, "  workers %d", s.Workers)
	}
	fmt.Fprintf(&b, "  elapsed %s  eta %s", s.Elapsed.Round(time.Second), s.ETA.Round(time.Second))
	return b.String()
}

// Bar formats s as a progress bar of width cells between brackets (no carriage
// return or newline):
//
//	[=========>          ] 312/600 loss 2.3100 4,210 tok/s 00:41 ETA 00:38
func Bar(s Status, width int) string {
	width = max(width, 1)
	filled := 0
	if s.Steps > 0 {
		filled = int(min(max(s.Step, 0), s.Steps) * int64(width) / s.Steps)
	}
	var b strings.Builder
	b.WriteByte('[')
	switch {
	case filled >= width:
		b.WriteString(strings.Repeat("=", width))
	default:
		b.WriteString(strings.Repeat("=", filled))
		b.WriteByte('>')
		b.WriteString(strings.Repeat(" ", width-filled-1))
	}
	fmt.Fprintf(&b, "] %*d/%d loss %.4f %s tok/s %s ETA %s", digits(s.Steps), s.Step, s.Steps, s.Loss,
		thousands(int64(s.TokensPerSec+0.5)), clock(s.Elapsed), clock(s.ETA))
	return b.String()
}

// clock formats d as mm:ss, or h:mm:ss from an hour up.
func clock(d time.Duration) string {
	sec := int64(max(d, 0).Round(time.Second) / time.Second)
	if sec >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	}
	return fmt.Sprintf("%02d:%02d", sec/60, sec%60)
}

// thousands formats n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func digits(n int64) int { return len(strconv.FormatInt(n, 10)) }

// IsTerminal reports whether w is a terminal: an *os.File on a terminal device.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Options configure a Printer.
type Options struct {
	Steps       int64 // the run's last step
	StartStep   int64 // the step the run (or its resumed part) began at
	StartTokens int64 // the tokens processed by then (Status.Tokens at StartStep)
	Every       int64 // steps between plain lines (the log interval); 0 means 1
	// Terminal decides whether w gets a live bar (true) or plain lines; nil means
	// IsTerminal.
	Terminal func(io.Writer) bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Redraw is the least time between two redraws of the bar (default 100 ms);
	// the last step is always drawn.
	Redraw time.Duration
	// BarWidth is the number of cells of the bar (default 30).
	BarWidth int
}

// Printer writes a run's progress to one writer. A nil *Printer, or one on a nil
// writer, prints nothing. It is safe for concurrent use, though a training loop
// drives it from one goroutine.
type Printer struct {
	w   io.Writer
	o   Options
	bar bool

	mu          sync.Mutex
	start       time.Time
	winT        time.Time // start of the current tokens/s window
	winStep     int64
	winTokens   int64   // Status.Tokens at the window's start
	tps         float64 // tokens/s over the last finished window (or since start)
	last        Status
	drawn       bool // a bar is on the current line
	lastDraw    time.Time
	haveUpdates bool
}

// New returns a Printer writing to w (nil: a Printer that prints nothing). The
// run's clock starts now.
func New(w io.Writer, o Options) *Printer {
	if o.Every <= 0 {
		o.Every = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Terminal == nil {
		o.Terminal = IsTerminal
	}
	if o.Redraw <= 0 {
		o.Redraw = 100 * time.Millisecond
	}
	if o.BarWidth <= 0 {
		o.BarWidth = 30
	}
	p := &Printer{w: w, o: o}
	if w != nil {
		p.bar = o.Terminal(w)
	}
	now := o.Now()
	p.start, p.winT, p.winStep, p.winTokens = now, now, o.StartStep, o.StartTokens
	return p
}

// Bar reports whether the Printer draws a live bar (rather than plain lines).
func (p *Printer) Bar() bool { return p != nil && p.bar }

// Update records that s.Step steps are applied, with s.Loss (and, optionally,
// s.LR, s.GradNorm and s.Workers) of the last one; the Printer fills in the
// step count, tokens/s, elapsed time and ETA. In line mode it prints a line when s.Step is a
// multiple of Options.Every or the last step; in bar mode it redraws the bar at
// most every Options.Redraw, and always at the last step.
func (p *Printer) Update(s Status) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.o.Now()
	s.Steps = p.o.Steps
	s.Elapsed = now.Sub(p.start)
	if done := s.Step - p.o.StartStep; done > 0 {
		s.ETA = time.Duration(float64(s.Elapsed) / float64(done) * float64(max(p.o.Steps-s.Step, 0)))
	}
	boundary := s.Step%p.o.Every == 0 || s.Step >= p.o.Steps
	rate := func() float64 {
		if dt := now.Sub(p.winT).Seconds(); dt > 0 && s.Step > p.winStep {
			return float64(s.Tokens-p.winTokens) / dt
		}
		return p.tps
	}
	if boundary {
		p.tps = rate()
		p.winT, p.winStep, p.winTokens = now, s.Step, s.Tokens
		s.TokensPerSec = p.tps
	} else if p.tps > 0 {
		s.TokensPerSec = p.tps
	} else {
		s.TokensPerSec = rate() // before the first full window
	}
	p.last, p.haveUpdates = s, true
	if !p.bar {
		if boundary {
			fmt.Fprintln(p.w, Line(s))
		}
		return
	}
	if s.Step >= p.o.Steps || !p.drawn || now.Sub(p.lastDraw) >= p.o.Redraw {
		p.draw(now)
	}
}

// draw redraws the bar in place. p.mu is held.
func (p *Printer) draw(now time.Time) {
	fmt.Fprint(p.w, "\r"+Bar(p.last, p.o.BarWidth)+clearEOL)
	p.drawn, p.lastDraw = true, now
}

// clearEOL erases from the cursor to the end of the line (ANSI).
const clearEOL = "\x1b[K"

// Println prints msg on a line of its own: in bar mode over the bar, which is
// then drawn again below it.
func (p *Printer) Println(msg string) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.bar {
		fmt.Fprintln(p.w, msg)
		return
	}
	fmt.Fprint(p.w, "\r"+msg+clearEOL+"\n")
	p.drawn = false
	if p.haveUpdates {
		p.draw(p.o.Now())
	}
}

// Finish ends the bar's line, so that what is printed next starts on a line of
// its own. It does nothing in line mode.
func (p *Printer) Finish() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// ClearingWriter returns a writer that erases the current terminal line before
// every write to w: given the log output while a bar is drawn on the same
// terminal, it makes each log line replace the bar instead of running on after
// it (the next update draws the bar again below).
func ClearingWriter(w io.Writer) io.Writer { return clearing{w} }

type clearing struct{ w io.Writer }

func (c clearing) Write(b []byte) (int, error) {
	if _, err := io.WriteString(c.w, "\r"+clearEOL); err != nil {
		return 0, err
	}
	return c.w.Write(b)
}
