package jobspec

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// A coordinator cluster with a Policy refuses, through gRPC and before Raft, a job
// too large for its limits and one whose paths leave the data root, and stores an
// admitted job with its paths resolved under the root.
func TestClusterAdmitsJobsThroughPolicy(t *testing.T) {
	root := t.TempDir()
	pol := Policy{DataRoot: root, Limits: model.Limits{MaxParams: 10_000_000, MaxActivationBytes: 1 << 30}}
	c := coordinator.MakeCluster(t, 1, func(cfg *coordinator.Config) { cfg.Jobs = pol })
	c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	submit := func(edit func(*trainer.Spec)) error {
		spec := trainer.DefaultSpec()
		edit(&spec)
		return c.Client().SubmitJob(ctx, &pb.SubmitJobRequest{Job: encodeRaw(t, spec)})
	}
	applied := c.Node(0).State().GetAppliedIndex()
	for name, tc := range map[string]struct {
		edit func(*trainer.Spec)
		want string
	}{
		"n_embd 1e9":  {func(s *trainer.Spec) { s.Model.Embd = 1e9 }, "overflows"},
		"too large":   {func(s *trainer.Spec) { s.Model.Embd, s.Model.Layers = 768, 12 }, "exceed the limit of 10000000"},
		"escape":      {func(s *trainer.Spec) { s.Data = "../../etc" }, `data="../../etc"`},
		"bad weights": {func(s *trainer.Spec) { s.AdamW.WeightDecay = -1 }, "adamw.weight_decay=-1"},
	} {
		err := submit(tc.edit)
		if !errors.Is(err, coordinator.ErrBadCommand) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want ErrBadCommand containing %q", name, err, tc.want)
		}
	}
	if st := c.Node(0).State(); st.GetJob() != nil || st.GetAppliedIndex() != applied {
		t.Fatalf("refused jobs reached Raft: job %v, applied index %d -> %d", st.GetJob(), applied, st.GetAppliedIndex())
	}
	if err := submit(func(s *trainer.Spec) { s.Data, s.Out = "data", "runs/one" }); err != nil {
		t.Fatal(err)
	}
	spec, err := Decode(c.Node(0).State().GetJob())
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Data != filepath.Join(real, "data") || spec.Out != filepath.Join(real, "runs/one") {
		t.Fatalf("stored paths data=%q out=%q, want them under %s", spec.Data, spec.Out, real)
	}
}
