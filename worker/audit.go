package worker

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// The audit log proves exactly-once data under faults. With Config.Audit set, a
// worker appends one JSON line per event to it, each written with a single write
// call before the event's effect can be observed by anyone (so a line survives the
// process being killed right after):
//
//	load        the job's state was loaded: step, weight checksum, source
//	state       a generation began: the synced step and checksum, the rank it came from
//	contribute  this rank is about to add the gradient of its streams for a step
//	apply       this rank applied the update of a step: checksums before and after
//	done        the job finished: final step and checksum
//
// VerifyAudit reads the logs of every worker of a run (across restarts) and checks
// that the final weights descend, update by update, from the initial ones, and that
// each of those updates summed the gradient of every data stream exactly once.

// AuditRecord is one line of an audit log.
type AuditRecord struct {
	Event      string `json:"event"`
	Worker     string `json:"worker"`
	Generation uint64 `json:"gen,omitempty"`
	Rank       int    `json:"rank"`
	World      int    `json:"world,omitempty"`
	Step       int64  `json:"step"`              // the step being computed (contribute, apply) or reached (load, state, done)
	Streams    []int  `json:"streams,omitempty"` // contribute: the streams whose gradient this rank adds
	Before     int64  `json:"before"`            // apply: weight checksum before the update
	Checksum   int64  `json:"checksum"`          // load, state, done: weight checksum; apply: after the update
	Source     string `json:"source,omitempty"`  // load: "init" or the checkpoint directory; state: the source rank
	Time       int64  `json:"t"`                 // wall clock, Unix nanoseconds, when it was recorded
}

// auditLog appends records to a writer; a nil *auditLog records nothing.
type auditLog struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func newAuditLog(w io.Writer) *auditLog {
	if w == nil {
		return nil
	}
	return &auditLog{w: w}
}

func (a *auditLog) enabled() bool { return a != nil }

// record writes r as one line. The first write error disables the log and is
// returned by every later call; training goes on.
func (a *auditLog) record(r AuditRecord) error {
	if a == nil {
		return nil
	}
	if r.Time == 0 {
		r.Time = time.Now().UnixNano()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	if _, err := a.w.Write(append(b, '\n')); err != nil {
		a.err = fmt.Errorf("audit log: %w", err)
	}
	return a.err
}

// ReadAudit reads the records of the audit logs at paths, in file order.
func ReadAudit(paths ...string) ([]AuditRecord, error) {
	var out []AuditRecord
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		line := 0
		for sc.Scan() {
			line++
			if len(sc.Bytes()) == 0 {
				continue
			}
			var r AuditRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				// A process killed mid-write leaves at most a torn last line.
				if !sc.Scan() {
					break
				}
				f.Close()
				return nil, fmt.Errorf("audit: %s line %d: %w", p, line, err)
			}
			out = append(out, r)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("audit: %s: %w", p, err)
		}
	}
	return out, nil
}

// AuditReport is what VerifyAudit found.
type AuditReport struct {
	Steps       int64 // updates in the final weights' lineage
	Final       int64 // checksum of the final weights
	Workers     int   // distinct workers that finished
	Recomputed  int64 // gradient computations of a step beyond the one that was applied
	Lost        int64 // (step, stream) pairs missing from their step's update
	Repeated    int64 // (step, stream) pairs added more than once into their step's update
	Generations int   // distinct generations that contributed to the lineage
}

// ErrAudit reports an audit log that does not prove exactly-once training.
var ErrAudit = errors.New("audit failed")

// VerifyAudit checks the records of a finished job of streams streams: every
// worker that finished holds the same weights; those weights descend, one applied
// update per step, from weights that were initialised or restored at step 0; and
// each update of that lineage summed each stream's gradient exactly once (the
// contributions of its generation's ranks partition the streams). The report counts
// what was lost, repeated and recomputed; the error (ErrAudit) says what is wrong.
func VerifyAudit(recs []AuditRecord, streams int) (*AuditReport, error) {
	rep := &AuditReport{}
	var final *AuditRecord
	finished := map[string]bool{}
	for i, r := range recs {
		if r.Event != "done" {
			continue
		}
		finished[r.Worker] = true
		if final == nil {
			final = &recs[i]
		} else if r.Step != final.Step || r.Checksum != final.Checksum {
			return rep, fmt.Errorf("%w: %s finished at step %d with checksum %016x, %s at step %d with %016x",
				ErrAudit, final.Worker, final.Step, final.Checksum, r.Worker, r.Step, r.Checksum)
		}
	}
	if final == nil {
		return rep, fmt.Errorf("%w: no worker finished", ErrAudit)
	}
	rep.Workers, rep.Final = len(finished), final.Checksum

	type key struct {
		gen  uint64
		step int64
	}
	applies := map[int64][]AuditRecord{}
	contribs := map[key][]AuditRecord{}
	attempts := map[int64]map[[3]int64]int{} // step -> (gen, rank) -> contributions
	initial := map[int64]bool{}
	for _, r := range recs {
		switch r.Event {
		case "apply":
			applies[r.Step] = append(applies[r.Step], r)
		case "contribute":
			contribs[key{r.Generation, r.Step}] = append(contribs[key{r.Generation, r.Step}], r)
			if attempts[r.Step] == nil {
				attempts[r.Step] = map[[3]int64]int{}
			}
			attempts[r.Step][[3]int64{int64(r.Generation), int64(r.Rank)}]++
		case "load":
			if r.Step == 0 {
				initial[r.Checksum] = true
			}
		}
	}

	gens := map[uint64]bool{}
	cur := final.Checksum
	for s := final.Step - 1; s >= 0; s-- {
		var upd *AuditRecord
		for i, a := range applies[s] {
			if a.Checksum != cur {
				continue
			}
			switch {
			case upd == nil:
				upd = &applies[s][i]
			case a.Before != upd.Before:
				return rep, fmt.Errorf("%w: step %d reached checksum %016x twice, from %016x in generation %d and from %016x in generation %d",
					ErrAudit, s, cur, upd.Before, upd.Generation, a.Before, a.Generation)
			case a.Generation > upd.Generation:
				// The same update from the same weights, recomputed after a restart
				// from a checkpoint: the newer one is the lineage's.
				upd = &applies[s][i]
			}
		}
		if upd == nil {
			return rep, fmt.Errorf("%w: no applied update of step %d produced the weights (checksum %016x) the next step started from",
				ErrAudit, s, cur)
		}
		gens[upd.Generation] = true
		// The contributions of the update's generation: one set of streams per rank
		// (a rank that retried the step in the same generation added the same ones).
		byRank := map[int][]int{}
		for _, c := range contribs[key{upd.Generation, s}] {
			if prev, ok := byRank[c.Rank]; ok && !slices.Equal(prev, c.Streams) {
				return rep, fmt.Errorf("%w: step %d generation %d: rank %d contributed streams %v and %v",
					ErrAudit, s, upd.Generation, c.Rank, prev, c.Streams)
			}
			byRank[c.Rank] = c.Streams
		}
		if len(byRank) != upd.World {
			return rep, fmt.Errorf("%w: step %d generation %d: %d of %d ranks recorded their contribution",
				ErrAudit, s, upd.Generation, len(byRank), upd.World)
		}
		seen := make([]int, streams)
		for _, ss := range byRank {
			for _, m := range ss {
				if m < 0 || m >= streams {
					return rep, fmt.Errorf("%w: step %d: stream %d outside [0, %d)", ErrAudit, s, m, streams)
				}
				seen[m]++
			}
		}
		for _, n := range seen {
			switch {
			case n == 0:
				rep.Lost++
			case n > 1:
				rep.Repeated += int64(n - 1)
			}
		}
		perGen := map[int64]int{}
		for gr, n := range attempts[s] {
			perGen[gr[0]] = max(perGen[gr[0]], n)
		}
		tries := 0
		for _, n := range perGen {
			tries += n
		}
		rep.Recomputed += int64(max(tries-1, 0))
		rep.Steps++
		cur = upd.Before
	}
	rep.Generations = len(gens)
	if !initial[cur] {
		return rep, fmt.Errorf("%w: the lineage starts from weights (checksum %016x) that were not initialised or restored at step 0", ErrAudit, cur)
	}
	if rep.Lost > 0 || rep.Repeated > 0 {
		return rep, fmt.Errorf("%w: %d (step, stream) pairs lost and %d repeated", ErrAudit, rep.Lost, rep.Repeated)
	}
	return rep, nil
}
