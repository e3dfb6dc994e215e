//go:build cuda

package cuda

import (
	"runtime"
	"sync"
)

// executor runs functions on one goroutine locked to its OS thread, the thread on
// which the CUDA context is current. Do waits for the function; Go queues it and
// returns. Functions run in the order they were queued.
type executor struct {
	work chan func()
	once sync.Once
	done chan struct{}
}

func newExecutor() *executor {
	e := &executor{work: make(chan func(), 256), done: make(chan struct{})}
	go e.loop()
	return e
}

func (e *executor) loop() {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	defer close(e.done)
	for f := range e.work {
		f()
	}
}

// Do runs f on the executor's thread and waits for it.
func (e *executor) Do(f func()) {
	ch := make(chan struct{})
	e.work <- func() { f(); close(ch) }
	<-ch
}

// Go queues f on the executor's thread without waiting.
func (e *executor) Go(f func()) { e.work <- f }

// Close stops the executor after the queued functions have run, and waits for it.
func (e *executor) Close() {
	e.once.Do(func() { close(e.work) })
	<-e.done
}
