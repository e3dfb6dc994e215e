package jobspec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/model"
	pb "github.com/ringtrain/ringtrain/proto/ringtrain/v1"
	"github.com/ringtrain/ringtrain/trainer"
)

// encodeRaw builds a job around spec without Encode's checks, as a client that
// skips them would send it.
func encodeRaw(t *testing.T, spec trainer.Spec) *pb.JobSpec {
	t.Helper()
	job, err := Encode(trainer.DefaultSpec(), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	job.SpecJson = mustJSON(t, spec)
	job.Streams, job.Steps, job.CheckpointInterval = int32(spec.Streams), spec.Steps, spec.CheckpointInterval
	return job
}

func TestPolicyAdmit(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "data", "shakespeare"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "data", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "data", "shakespeare"), filepath.Join(root, "inside")); err != nil {
		t.Fatal(err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	pol := Policy{DataRoot: root, Limits: model.Limits{MaxParams: 50_000_000, MaxActivationBytes: 8 << 30}}
	cases := []struct {
		name string
		edit func(*trainer.Spec)
		pol  *Policy // nil: pol
		want string  // "" = admitted; else a substring of the error
		data string  // the data path admitted, when want is ""
	}{
		{name: "default recipe", edit: func(s *trainer.Spec) { s.Data = "data/shakespeare" }, data: filepath.Join(realRoot, "data/shakespeare")},
		{name: "absolute path inside", edit: func(s *trainer.Spec) { s.Data = filepath.Join(realRoot, "data", "shakespeare") }, data: filepath.Join(realRoot, "data/shakespeare")},
		{name: "through a link inside", edit: func(s *trainer.Spec) { s.Data = "inside" }, data: filepath.Join(realRoot, "inside")},
		{name: "run directory not yet made", edit: func(s *trainer.Spec) { s.Out = "runs/new/deep" }},
		{name: "dot-dot escape", edit: func(s *trainer.Spec) { s.Data = "../../etc" }, want: `data="../../etc" resolves to`},
		{name: "dot-dot inside stays", edit: func(s *trainer.Spec) { s.Data = "data/x/../shakespeare" }, data: filepath.Join(realRoot, "data/shakespeare")},
		{name: "absolute outside", edit: func(s *trainer.Spec) { s.Out = "/etc/cron.d" }, want: `out="/etc/cron.d" resolves to`},
		{name: "symlink escape", edit: func(s *trainer.Spec) { s.InitFrom = "data/escape/ckpt" }, want: `init_from="data/escape/ckpt" leads through a symbolic link`},
		{name: "tokenizer file outside", edit: func(s *trainer.Spec) { s.Tokenizer = "/etc/passwd" }, want: `tokenizer="/etc/passwd"`},
		{name: "named tokenizer is no path", edit: func(s *trainer.Spec) { s.Tokenizer = "gpt2" }},
		{name: "control character", edit: func(s *trainer.Spec) { s.Data = "a\nb" }, want: "control characters"},
		{name: "negative lr", edit: func(s *trainer.Spec) { s.LR = -1 }, want: "lr=-1"},
		{name: "beta2 of 1", edit: func(s *trainer.Spec) { s.AdamW.Beta2 = 1 }, want: "adamw.beta2=1"},
		{name: "n_embd 1e9", edit: func(s *trainer.Spec) { s.Model.Embd = 1e9 }, want: "parameter count overflows"},
		{name: "model over the configured limit", edit: func(s *trainer.Spec) { s.Model.Embd, s.Model.Layers = 1024, 12 }, want: "exceed the limit of 50000000"},
		{name: "activations over the configured limit", edit: func(s *trainer.Spec) { s.MicroBatch = 4096 }, want: "over the limit of 8589934592"},
		{name: "default limits admit a large micro-batch", edit: func(s *trainer.Spec) { s.MicroBatch = 4096 }, pol: &Policy{}},
		{name: "no data root: paths untouched", edit: func(s *trainer.Spec) { s.Data = "../x" }, pol: &Policy{}, data: "../x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := trainer.DefaultSpec()
			tc.edit(&spec)
			p := pol
			if tc.pol != nil {
				p = *tc.pol
			}
			job := encodeRaw(t, spec)
			got, err := p.Admit(job)
			if tc.want != "" {
				if !errors.Is(err, coordinator.ErrBadCommand) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want ErrBadCommand containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			back, err := Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			if tc.data != "" && back.Data != tc.data {
				t.Errorf("data %q, want %q", back.Data, tc.data)
			}
			if p.DataRoot != "" {
				for _, f := range pathsOf(&back) {
					if !filepath.IsAbs(*f.v) {
						t.Errorf("%s=%q left relative", f.field, *f.v)
					}
				}
			}
			// The admitted job passes the pure check and admits to itself.
			if err := Check(got); err != nil {
				t.Errorf("Check of the admitted job: %v", err)
			}
			if again, err := p.Admit(got); err != nil || string(again.GetSpecJson()) != string(got.GetSpecJson()) {
				t.Errorf("admitting the admitted job again: %v, changed %v", err, err == nil && again != got)
			}
		})
	}
}

func TestCheckRefusesBadSpecJSON(t *testing.T) {
	job, err := Encode(trainer.DefaultSpec(), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, js := range map[string]string{
		"not JSON":       `{`,
		"huge number":    `{"lr": 1e999}`,
		"zero log":       `{"streams":1,"steps":2000,"checkpoint_interval":1000,"objective":"causal","seq_len":64,"micro_batch":12,"lr":0.001,"adamw":{"beta1":0.9,"beta2":0.95,"eps":1e-8},"log_interval":0,"model":{"n_layer":4,"n_head":4,"n_embd":128}}`,
		"huge embedding": `{"streams":1,"steps":2000,"checkpoint_interval":1000,"objective":"causal","seq_len":64,"micro_batch":12,"lr":0.001,"adamw":{"beta1":0.9,"beta2":0.95,"eps":1e-8},"log_interval":10,"model":{"n_layer":4,"n_head":4,"n_embd":1000000000}}`,
	} {
		job.SpecJson = []byte(js)
		if err := Check(job); !errors.Is(err, coordinator.ErrBadCommand) {
			t.Errorf("%s: err %v, want ErrBadCommand", name, err)
		}
	}
}

func mustJSON(t *testing.T, spec trainer.Spec) []byte {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzCheck: a job whose spec_json holds any bytes is refused by Check with an
// error wrapping coordinator.ErrBadCommand, or its spec decodes to one that builds a
// model within the hard limits; Admit under a data root then confines its paths.
func FuzzCheck(f *testing.F) {
	for _, edit := range []func(*trainer.Spec){
		func(*trainer.Spec) {},
		func(s *trainer.Spec) { s.Model.Embd = 1e9 },
		func(s *trainer.Spec) { s.Data, s.Out, s.InitFrom = "../x", "/etc", "a/../../b" },
		func(s *trainer.Spec) { s.MicroBatch, s.SeqLen = 1<<40, 1<<40 },
	} {
		s := trainer.DefaultSpec()
		edit(&s)
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		var spec trainer.Spec
		if json.Unmarshal(b, &spec) != nil {
			spec = trainer.DefaultSpec()
		}
		job := &pb.JobSpec{SpecJson: b, Streams: int32(spec.Streams), Steps: spec.Steps, CheckpointInterval: spec.CheckpointInterval, MinWorkers: 1}
		if err := Check(job); err != nil {
			if !errors.Is(err, coordinator.ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		got, err := Decode(job)
		if err != nil {
			t.Fatalf("checked job does not decode: %v", err)
		}
		c := got.Model
		if c.VocabSize == 0 {
			c.VocabSize = trainer.AssumedVocabSize
		}
		if c.MaxSeqLen == 0 {
			c.MaxSeqLen = got.SeqLen
		}
		if err := c.CheckLimits(model.HardLimits, got.MicroBatch, got.SeqLen); err != nil {
			t.Fatalf("checked job's model: %v", err)
		}
		admitted, err := Policy{DataRoot: root}.Admit(job)
		if err != nil {
			if !errors.Is(err, coordinator.ErrBadCommand) {
				t.Fatalf("admit error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		back, err := Decode(admitted)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pathsOf(&back) {
			if !within(root, *p.v) && !within(mustReal(t, root), *p.v) {
				t.Fatalf("admitted %s=%q outside %s", p.field, *p.v, root)
			}
		}
	})
}

func mustReal(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
