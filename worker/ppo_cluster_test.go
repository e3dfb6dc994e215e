package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
	"github.com/ringtrain/ringtrain/worker"
)

// ppoFixture prepares what a ppo job needs: an SFT dataset of synthetic arith rows
// (its prompts), a short sft run's checkpoint (the policy's start and reference) and
// a short reward run's checkpoint from it. It returns the ppo spec (3 steps, 6
// streams of 2 prompts) with out unset.
func ppoFixture(t *testing.T) trainer.Spec {
	t.Helper()
	tmp := t.TempDir()
	const T = 64
	prefData, sftData := prefFixtureData(t, tmp, T)
	base := tinySpec(sftData, filepath.Join(tmp, "sft-run"))
	base.Objective, base.SeqLen, base.Streams, base.MicroBatch, base.Steps = trainer.SFT, T, 6, 2, 20
	sft, err := trainer.Run(context.Background(), base, trainer.RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatalf("sft run: %v", err)
	}
	sftCk, err := model.LoadCheckpoint(sft.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	rs := tinySpec(prefData, filepath.Join(tmp, "rm-run"))
	rs.Model = sftCk.Config
	rs.Objective, rs.SeqLen, rs.Streams, rs.MicroBatch, rs.Steps, rs.InitFrom = trainer.Reward, T, 6, 2, 10, sft.Checkpoint
	rm, err := trainer.Run(context.Background(), rs, trainer.RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatalf("reward run: %v", err)
	}
	spec := tinySpec(sftData, "")
	spec.Model = sftCk.Config
	spec.Objective, spec.SeqLen, spec.Streams, spec.MicroBatch, spec.Steps = trainer.PPO, T, 6, 2, 3
	spec.InitFrom = sft.Checkpoint
	// As for dpo: AdamW turns the summation-order rounding of near-zero gradient
	// entries into whole steps of the learning rate, so a small rate keeps it under
	// the tolerance (the weights still move by far more, see the test).
	spec.LR, spec.MinLR = 3e-4, 3e-4
	spec.PPO = &trainer.PPOSpec{RewardModel: rm.Checkpoint, MaxNewTokens: 8, Epochs: 2, EntCoef: 0.01}
	return spec
}

// ppoMetrics reads the ppo fields of a run's metrics.jsonl, one map per step.
func ppoMetrics(t *testing.T, out string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// ppoGauge reads the one ringtrain_ppo{measure=m} gauge in reg (rank 0's).
func ppoGauge(t *testing.T, reg *prometheus.Registry, m string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var vals []float64
	for _, mf := range mfs {
		if mf.GetName() != "ringtrain_ppo" {
			continue
		}
		for _, x := range mf.GetMetric() {
			for _, l := range x.GetLabel() {
				if l.GetName() == "measure" && l.GetValue() == m {
					vals = append(vals, x.GetGauge().GetValue())
				}
			}
		}
	}
	if len(vals) != 1 {
		t.Fatalf("ringtrain_ppo{measure=%q}: %d gauges, want rank 0's", m, len(vals))
	}
	return vals[0]
}

// TestPPODataParallelEquivalence: the ppo objective on 1 and 3 workers trains the
// same weights as the single-process trainer (up to the summation order of the
// gradients), every rank with the same bits. Each rank samples its own streams'
// rollouts with samplers seeded by (step, stream, row), whitens the advantages with
// statistics summed over the ring in fixed point, and sums the gradients of the inner
// PPO epochs over the ring. The first step's rollouts come from identical weights,
// so its reward, KL and entropy are the single process's bit for bit.
func TestPPODataParallelEquivalence(t *testing.T) {
	spec := ppoFixture(t)
	spec.Out = t.TempDir()
	ref, err := trainer.Run(context.Background(), spec, trainer.RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatalf("reference run: %v", err)
	}
	ck, err := model.LoadCheckpoint(ref.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if !ck.Config.ValueHead {
		t.Fatalf("ppo checkpoint has no value head: %+v", ck.Config)
	}
	init, err := model.LoadCheckpoint(spec.InitFrom)
	if err != nil {
		t.Fatal(err)
	}
	if moved := worker.RelL2(ck.Params[:len(init.Params)], init.Params); moved < 1e-3 {
		t.Fatalf("ppo moved the weights by only %.3g relative L2: nothing to compare", moved)
	} else {
		t.Logf("ppo moved the weights by %.3g relative L2", moved)
	}
	want := ppoMetrics(t, spec.Out)
	if len(want) != int(spec.Steps) || want[0]["ppo_reward"] == nil || want[0]["ppo_kl"] == nil {
		t.Fatalf("single process metrics lack the ppo fields: %v", want)
	}
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
			s := spec
			s.Out = t.TempDir()
			reg := prometheus.NewRegistry()
			checkEquivalent(t, runClusterMetrics(t, s, n, reg), ck.Params, ref.TrainLoss)
			got := ppoMetrics(t, s.Out)
			// Rank 0 exports the last step's measures as ringtrain_ppo{measure=...}.
			if g, w := ppoGauge(t, reg, "reward"), got[len(got)-1]["ppo_reward"]; g != w {
				t.Errorf("ringtrain_ppo{measure=\"reward\"} = %v, the last metrics record %v", g, w)
			}
			if len(got) != len(want) {
				t.Fatalf("%d metrics records, single process %d", len(got), len(want))
			}
			// The workers' counters add up to the tokens the job's steps processed, the
			// prompts and answers of the rollouts, which padded rows would exceed.
			last := got[len(got)-1]["tokens"].(float64)
			if sum := tokensTotal(t, reg); sum != last || last >= float64(int(s.Steps)*s.GlobalBatch()*s.SeqLen) {
				t.Errorf("ringtrain_tokens_total over the workers %v, the last record's tokens %v (padded rows: %d)", sum, last, int(s.Steps)*s.GlobalBatch()*s.SeqLen)
			}
			if got[0]["ppo_kl"] != want[0]["ppo_kl"] {
				t.Errorf("step 1 ppo_kl = %v, single process %v", got[0]["ppo_kl"], want[0]["ppo_kl"])
			}
			// Later steps sample from weights that differ in the last bits: the same
			// tokens (a draw would have to fall within rounding of a boundary to
			// differ), so the same answers, lengths and scores.
			for i := range got {
				// The tokens a step processed (prompts and answers) are the global
				// batch's, whatever the world size.
				for _, k := range []string{"ppo_reward", "ppo_response_len", "tokens"} {
					if got[i][k] != want[i][k] {
						t.Errorf("step %d %s = %v, single process %v", i+1, k, got[i][k], want[i][k])
					}
				}
			}
		})
	}
	// In exact mode the gradients of every update (the inner ones too) are summed in
	// fixed point: 3 workers give the single process's weights bit for bit.
	t.Run("exact/workers=3", func(t *testing.T) {
		_, _, exact := exactMatchesSingleProcess(t, spec)
		if rel := worker.RelL2(exact, ck.Params); rel > 1e-4 {
			t.Errorf("exact single process differs from the float one by %.3g relative L2", rel)
		}
	})
}
