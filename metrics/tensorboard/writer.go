package tensorboard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ringtrain/ringtrain/internal/durable"
)

// FilePrefix begins the name of every event file; TensorBoard reads the files whose
// names contain "tfevents".
const FilePrefix = "events.out.tfevents."

// Errors of a Writer, wrapped with the file's path.
var (
	// ErrClosed is returned by a Writer used after Close.
	ErrClosed = errors.New("tensorboard: writer closed")
	// ErrBadScalar is returned for a scalar without a tag.
	ErrBadScalar = errors.New("tensorboard: bad scalar")
)

// Options configure a Writer. The zero value is ready to use.
type Options struct {
	// Hostname ends the file name; default os.Hostname(), or "localhost" when that
	// fails.
	Hostname string
	// Now is the clock of the file name and of the file_version event; default
	// time.Now.
	Now func() time.Time
}

// Writer appends events to one new event file. Its methods are for one goroutine at
// a time. After a failed write every later call returns that error: a record cut
// short must stay the file's last, or readers would take what follows for garbage.
type Writer struct {
	f    *os.File
	path string
	buf  []byte // the record being made; reused
	data []byte // the event being made; reused
	err  error  // sticky: the first write error, or ErrClosed
}

// Create makes dir (and its parents, mode 0755) if need be and a new event file in
// it, events.out.tfevents.<unix seconds>.<hostname>, whose first record is the
// file_version event. It never opens an existing file: when the name is taken (two
// writers in one second) it adds the first free suffix of ".1", ".2", ... to it.
func Create(dir string, o Options) (*Writer, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		o.Hostname = h
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: event folder: %w", err)
	}
	now := o.Now()
	base := filepath.Join(dir, fmt.Sprintf("%s%010d.%s", FilePrefix, now.Unix(), o.Hostname))
	var f *os.File
	path := base
	for n := 1; ; n++ {
		var err error
		f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || n > 1000 {
			return nil, fmt.Errorf("tensorboard: event file: %w", err)
		}
		path = fmt.Sprintf("%s.%d", base, n)
	}
	w := &Writer{f: f, path: path}
	if err := w.write(appendFileVersionEvent(nil, now)); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

// Start records that training (re)starts at step: a SessionLog START event, after
// which TensorBoard forgets the points of this run's earlier files at step and after.
// A process that resumes a run calls it before its first scalars, with the first
// step it will record.
func (w *Writer) Start(step int64, wall time.Time) error {
	w.data = appendStartEvent(w.data[:0], wall, step)
	return w.write(w.data)
}

// Scalars records the scalars of step, taken at wall, as one event; with none it
// writes nothing. The record is in the file (the operating system's) when it
// returns.
func (w *Writer) Scalars(step int64, wall time.Time, scalars []Scalar) error {
	if len(scalars) == 0 {
		return nil
	}
	for i, s := range scalars {
		if s.Tag == "" {
			return fmt.Errorf("%w: scalar %d of step %d has no tag", ErrBadScalar, i, step)
		}
	}
	w.data = appendScalarsEvent(w.data[:0], wall, step, scalars)
	return w.write(w.data)
}

// write frames data as a record and writes it to the file in one call.
func (w *Writer) write(data []byte) error {
	if w.err != nil {
		return w.err
	}
	w.buf = appendRecord(w.buf[:0], data)
	if _, err := w.f.Write(w.buf); err != nil {
		w.err = fmt.Errorf("tensorboard: write %s: %w", w.path, err)
		return w.err
	}
	return nil
}

// Close fsyncs the file and its folder and closes it. Later calls return ErrClosed;
// closing twice returns nil.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f, w.err = nil, fmt.Errorf("%w: %s", ErrClosed, w.path)
	if err != nil {
		return fmt.Errorf("tensorboard: close %s: %w", w.path, err)
	}
	return durable.SyncDir(filepath.Dir(w.path))
}
