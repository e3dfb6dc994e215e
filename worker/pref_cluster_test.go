package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestPreferenceDataParallelEquivalence: the reward and dpo objectives on 1 and 3
// workers train the same weights as the single-process trainer (up to summation
// order), every rank with the same bits, and book the same per-step preference
// measures in metrics.jsonl (in exact mode the same bits). Each pair's two rows stay in one stream, and
// each step's loss is normalised by the global batch's pair count, which every rank
// knows from the spec. Both start from one short sft run's checkpoint (the reward
// model with a fresh score head, dpo with that checkpoint as its frozen reference).
func TestPreferenceDataParallelEquivalence(t *testing.T) {
	const T = 64
	prefData, sftData := prefFixtureData(t, t.TempDir(), T)
	base := tinySpec(sftData, t.TempDir())
	base.Objective, base.SeqLen, base.Streams, base.MicroBatch, base.Steps = trainer.SFT, T, 6, 2, 3
	sft, err := trainer.Run(context.Background(), base, trainer.RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatalf("sft run: %v", err)
	}
	sftCk, err := model.LoadCheckpoint(sft.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []trainer.Objective{trainer.Reward, trainer.DPO} {
		t.Run(string(obj), func(t *testing.T) {
			spec := tinySpec(prefData, t.TempDir())
			spec.Model = sftCk.Config
			spec.Objective, spec.SeqLen, spec.Streams, spec.MicroBatch, spec.Steps = obj, T, 6, 2, 4
			spec.InitFrom = sft.Checkpoint
			// Much of a preference gradient is near zero (dpo: chosen and rejected
			// rows share their prompt, so their terms nearly cancel; reward: the
			// fresh score head is small), and AdamW turns the rounding of such
			// entries into whole steps: a smaller rate than tinySpec's keeps the
			// summation-order noise under the tolerance.
			spec.LR, spec.MinLR = 3e-3, 3e-4
			if obj == trainer.DPO {
				spec.Beta = 0.5
			}
			ref, err := trainer.Run(context.Background(), spec, trainer.RunOptions{NoTensorBoard: true})
			if err != nil {
				t.Fatalf("reference run: %v", err)
			}
			ck, err := model.LoadCheckpoint(ref.Checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			if obj == trainer.Reward && ck.Config.NumLabels != 1 {
				t.Fatalf("reward checkpoint has num_labels %d", ck.Config.NumLabels)
			}
			for _, n := range []int{1, 3} {
				t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
					s := spec
					s.Out = t.TempDir()
					reg := prometheus.NewRegistry()
					checkEquivalent(t, runClusterMetrics(t, s, n, reg), ck.Params, ref.TrainLoss)
					recs := prefRecords(t, s.Out)
					checkPrefRecords(t, recs, prefRecords(t, spec.Out), false)
					checkPrefGauges(t, reg, n, recs[len(recs)-1])
					checkTokens(t, reg, s)
				})
			}
			// In exact mode the gradients are summed in fixed point: 3 workers give
			// the single process's weights bit for bit.
			t.Run("exact/workers=3", func(t *testing.T) {
				oneOut, clusterOut, _ := exactMatchesSingleProcess(t, spec)
				checkPrefRecords(t, prefRecords(t, clusterOut), prefRecords(t, oneOut), true)
			})
		})
	}
}

// prefFields are the per-step preference measures of metrics.jsonl.
var prefFields = []string{"reward_acc", "reward_margin", "reward_chosen", "reward_rejected"}

// prefRecords returns the preference measures of every record of the run directory
// out's metrics.jsonl, in prefFields' order.
func prefRecords(t *testing.T, out string) [][]float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]float64
	for line := range bytes.Lines(b) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		var vs []float64
		for _, k := range prefFields {
			v, ok := rec[k].(float64)
			if !ok {
				t.Fatalf("%s: step %v has no %s", out, rec["step"], k)
			}
			vs = append(vs, v)
		}
		recs = append(recs, vs)
	}
	return recs
}

// checkPrefRecords compares a cluster's per-step preference measures with the single
// process's: equal, or within float summation noise (an accuracy within one pair of
// the batch's 12).
func checkPrefRecords(t *testing.T, got, want [][]float64, exact bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d metrics records, the single process %d", len(got), len(want))
	}
	for i := range got {
		for j, k := range prefFields {
			g, w := got[i][j], want[i][j]
			tol := 1e-4 + 1e-3*math.Abs(w)
			if k == "reward_acc" {
				tol = 1.0/12 + 1e-9
			}
			if exact && g != w || math.Abs(g-w) > tol {
				t.Errorf("record %d: %s = %v, the single process %v", i, k, g, w)
			}
		}
	}
}

// prefGauges are the Prometheus gauges of prefFields, in its order.
var prefGauges = []string{"ringtrain_reward_accuracy", "ringtrain_reward_margin", "ringtrain_reward_chosen", "ringtrain_reward_rejected"}

// checkPrefGauges checks that every one of the n workers registered on reg exports
// the last step's preference measures (want, as metrics.jsonl booked them): every
// rank holds the global batch's sums.
func checkPrefGauges(t *testing.T, reg *prometheus.Registry, n int, want []float64) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // name/worker -> value
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "worker" && m.GetGauge() != nil {
					got[f.GetName()+"/"+l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	for w := range n {
		for i, name := range prefGauges {
			key := fmt.Sprintf("%s/w%d", name, w)
			if v, ok := got[key]; !ok || v != want[i] {
				t.Errorf("%s = %v (exported: %v), metrics.jsonl's %s %v", key, v, ok, prefFields[i], want[i])
			}
		}
	}
}

// checkTokens checks that the workers registered on reg counted, together, both rows
// of every pair of every step as computed tokens.
func checkTokens(t *testing.T, reg *prometheus.Registry, spec trainer.Spec) {
	t.Helper()
	if sum, want := tokensTotal(t, reg), float64(spec.Steps)*float64(spec.Streams*spec.MicroBatch*2*spec.SeqLen); sum != want {
		t.Errorf("ringtrain_tokens_total over the workers: %v, want %v (%d steps of %d pairs of 2 rows of %d tokens)",
			sum, want, spec.Steps, spec.Streams*spec.MicroBatch, spec.SeqLen)
	}
}

// tokensTotal returns the sum of ringtrain_tokens_total over the workers registered
// on reg.
func tokensTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == "ringtrain_tokens_total" {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// prefFixtureData writes 240 synthetic arith preference pairs to dir and prepares
// them twice with the byte tokenizer at seq_len T in 6 shards: as a preference
// dataset (prefData) and, their chosen answers alone, as an SFT dataset (sftData).
func prefFixtureData(t *testing.T, dir string, T int) (prefData, sftData string) {
	t.Helper()
	tok := tokenizer.NewByte()
	tj, _ := tokenizer.Marshal(tok)
	pairs, err := chat.SyntheticPairs(chat.TaskArith, 240, 5)
	if err != nil {
		t.Fatal(err)
	}
	var prefRows, sftRows bytes.Buffer
	for _, p := range pairs {
		b, _ := chat.MarshalPair(p)
		prefRows.Write(append(b, '\n'))
		b, _ = chat.MarshalRow(p.Chosen)
		sftRows.Write(append(b, '\n'))
	}
	prefIn, sftIn := filepath.Join(dir, "prefs.jsonl"), filepath.Join(dir, "rows.jsonl")
	for path, b := range map[string][]byte{prefIn: prefRows.Bytes(), sftIn: sftRows.Bytes()} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	prefData, sftData = filepath.Join(dir, "prefs"), filepath.Join(dir, "sft")
	for _, o := range []shard.SFTOptions{
		{Inputs: []string{prefIn}, OutDir: prefData, Preference: true},
		{Inputs: []string{sftIn}, OutDir: sftData},
	} {
		o.Tokenizer, o.TokenizerJSON, o.SeqLen, o.MinShards = tok, tj, T, 6
		if _, err := shard.PrepareSFT(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	return prefData, sftData
}

// exactMatchesSingleProcess runs spec in exact mode in a single process and on a
// cluster of 3 workers, and fails unless every rank ends with the single process's
// weights bit for bit. It returns both runs' directories and those weights.
func exactMatchesSingleProcess(t *testing.T, spec trainer.Spec) (oneOut, clusterOut string, params []float32) {
	t.Helper()
	one := spec
	one.Exact, one.Out = true, t.TempDir()
	r1, err := trainer.Run(context.Background(), one, trainer.RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatalf("exact reference run: %v", err)
	}
	ck1, err := model.LoadCheckpoint(r1.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	s := one
	s.Out = t.TempDir()
	for rank, got := range runCluster(t, s, 3) {
		for i := range got.Params {
			if got.Params[i] != ck1.Params[i] {
				t.Fatalf("rank %d: weight %d = %v, the single process %v", rank, i, got.Params[i], ck1.Params[i])
			}
		}
	}
	return one.Out, s.Out, ck1.Params
}
