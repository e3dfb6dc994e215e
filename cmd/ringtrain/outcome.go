package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
)

// This file says how a training run (train, local) ended in the command line's own
// terms: a run with nothing left to do, an interruption, and a job the flags got
// wrong, named by its flags.

// refuseResume is --no-resume's check: an error when the run directory out already
// holds a checkpoint, which training there would mix with the new run's. It is a
// failure (status 1), as a dataset already in prepare's --out is: the flags are
// valid, the directory is taken.
func refuseResume(out string) error {
	dir, err := model.LatestCheckpoint(trainer.CheckpointRoot(out))
	if err != nil {
		return nil
	}
	return fmt.Errorf("--no-resume: run directory %s already holds checkpoint %s: remove the run directory or choose another --out to start afresh", out, dir)
}

// printNothingToDo reports a run directory already at (or past) the job's last step.
func printNothingToDo(w io.Writer, step, steps int64, ckpt string) {
	if step == steps {
		fmt.Fprintf(w, "already at step %d of %d, nothing to do\n", step, steps)
	} else {
		fmt.Fprintf(w, "already at step %d, past --steps %d: nothing to do\n", step, steps)
	}
	fmt.Fprintf(w, "done: step %d; checkpoint %s\n", step, orNone(ckpt))
}

// interrupted reports whether err is the end of a command whose context a signal
// cancelled (main's signal.NotifyContext).
func interrupted(cmd *cobra.Command, err error) bool {
	return errors.Is(err, context.Canceled) && cmd.Context().Err() != nil
}

// interruptedTrain is the error `train` returns when a signal stopped it: trainer.Run
// has then checkpointed the last completed step (res may be nil when it stopped
// before training began).
func interruptedTrain(res *trainer.Result) error {
	if res == nil || res.Step == 0 || res.Checkpoint == "" {
		return interruptedError(errors.New("interrupted before the first step: no checkpoint written"))
	}
	return interruptedError(fmt.Errorf("interrupted: checkpoint written at step %d (%s); rerun to resume", res.Step, res.Checkpoint))
}

// interruptedLocal is the error `local` returns when a signal stopped it: the
// cluster's rank 0 has then checkpointed the last completed step (res, which
// localcluster.Run returns beside the error, holds its result), and it says so as
// `train` does. Without that result (rank 0 had not trained a step, or could not
// write) it names the newest checkpoint in the run directory out, where a rerun
// resumes.
func interruptedLocal(res *localcluster.Result, out string) error {
	if res != nil && len(res.Workers) > 0 && res.Workers[0].Rank == 0 && res.Workers[0].Checkpoint != "" {
		r := res.Workers[0]
		return interruptedTrain(&trainer.Result{Step: r.Step, Checkpoint: r.Checkpoint})
	}
	dir, err := model.LatestCheckpoint(trainer.CheckpointRoot(out))
	if err != nil {
		return interruptedError(errors.New("interrupted before the first checkpoint: a rerun starts afresh"))
	}
	step := "?"
	if ck, err := model.LoadCheckpoint(dir); err == nil {
		step = fmt.Sprint(ck.Trainer.Step)
	}
	return interruptedError(fmt.Errorf("interrupted: the newest checkpoint is at step %s (%s); rerun to resume from it", step, dir))
}

// specError puts an error of a training run in flag terms: a checkpoint of another
// model shape names the flags that differ, and any other invalid job spec is a usage
// error. Other errors are returned as they are.
func specError(err error) error {
	var mm *trainer.ModelMismatchError
	if errors.As(err, &mm) {
		var parts []string
		for _, f := range mm.Fields() {
			parts = append(parts, modelFieldInFlags(f))
		}
		diff := strings.Join(parts, "; ")
		if mm.Source == "init_from" {
			return usageError(reworded(fmt.Sprintf("--init-from %s has another model shape: %s; give its values", mm.Dir, diff), err))
		}
		return usageError(reworded(fmt.Sprintf("the run directory's checkpoint %s has another model shape: %s; give the checkpoint's values to resume it, or another --out to start afresh",
			mm.Dir, diff), err))
	}
	if errors.Is(err, trainer.ErrBadSpec) {
		return usageError(err)
	}
	return err
}

// modelFieldInFlags names a differing model field by the flag that sets it.
func modelFieldInFlags(f trainer.ModelField) string {
	switch f.Name {
	case "max_seq_len":
		return fmt.Sprintf("--context %d in the checkpoint, %d given (--context 0 means --seq)", f.Checkpoint, f.Job)
	case "vocab_size":
		return fmt.Sprintf("vocabulary %d in the checkpoint, %d from the tokenizer of --data", f.Checkpoint, f.Job)
	}
	return fmt.Sprintf("--%s %d in the checkpoint, %d given", f.Name, f.Checkpoint, f.Job)
}

// rewordedError is an error said again in other words: its message replaces the
// cause's, which errors.Is and errors.As still find.
type rewordedError struct {
	msg   string
	cause error
}

func reworded(msg string, cause error) error { return &rewordedError{msg, cause} }

func (e *rewordedError) Error() string { return e.msg }
func (e *rewordedError) Unwrap() error { return e.cause }
