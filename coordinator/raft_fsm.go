package coordinator

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
)

// raftFSM adapts Machine to raft.FSM. Raft calls Apply, Snapshot and Restore from its
// FSM goroutine; the gRPC service and the leader loop read the state concurrently
// through read, and wait for changes through changed.
type raftFSM struct {
	mu      sync.RWMutex
	m       *Machine
	changes chan struct{} // closed and replaced after every change
}

func newRaftFSM(jobs JobPolicy) *raftFSM {
	return &raftFSM{m: NewMachine(jobs), changes: make(chan struct{})}
}

// Apply implements raft.FSM. It returns the command's *pb.Result.
func (f *raftFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.m.Apply(l.Index, l.Data)
	f.notifyLocked()
	return res
}

func (f *raftFSM) notifyLocked() {
	close(f.changes)
	f.changes = make(chan struct{})
}

// changed returns a channel that is closed at the next change of the state.
func (f *raftFSM) changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changes
}

// read calls fn with the live state under the read lock; fn must not keep or modify
// it (copy what it needs with proto.CloneOf).
func (f *raftFSM) read(fn func(st *pb.CoordinatorState)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.m.view())
}

// state returns a deep copy of the state.
func (f *raftFSM) state() *pb.CoordinatorState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.m.State()
}

// Snapshot implements raft.FSM: it encodes the state (deterministically) under the
// lock; Persist then only writes bytes.
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(f.m.view())
	if err != nil {
		return nil, fmt.Errorf("coordinator: snapshot: %w", err)
	}
	return fsmSnapshot(b), nil
}

// Restore implements raft.FSM: it replaces the state with the snapshot's.
func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("coordinator: restore: read snapshot: %w", err)
	}
	st, err := DecodeState(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.m.Restore(st); err != nil {
		return fmt.Errorf("coordinator: restore: %w", err)
	}
	f.notifyLocked()
	return nil
}

// DecodeState decodes and checks a snapshot of the state.
func DecodeState(b []byte) (*pb.CoordinatorState, error) {
	st := &pb.CoordinatorState{}
	if err := proto.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("coordinator: decode state: %w: %w", ErrBadCommand, err)
	}
	if err := checkState(st); err != nil {
		return nil, fmt.Errorf("coordinator: decode state: %w", err)
	}
	return st, nil
}

// fsmSnapshot is an encoded state.
type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("coordinator: persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("coordinator: persist snapshot: %w", err)
	}
	return nil
}

func (s fsmSnapshot) Release() {}
