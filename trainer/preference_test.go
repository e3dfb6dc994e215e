package trainer

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/chat"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/shard"
	"github.com/ringtrain/ringtrain/tokenizer"
)

// prefSeqLen is the rows' T of the preference datasets these tests prepare.
const prefSeqLen = 48

// preparePrefData prepares n synthetic arith pairs (byte tokenizer, rows of
// prefSeqLen+1 tokens) into a fresh preference dataset in 2 shards, every valEvery-th
// pair held out for validation, and returns its directory.
func preparePrefData(t testing.TB, n int, valFraction float64) string {
	t.Helper()
	tmp := t.TempDir()
	tok := tokenizer.NewByte()
	tj, err := tokenizer.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	pairs, err := chat.SyntheticPairs(chat.TaskArith, n, 3)
	if err != nil {
		t.Fatal(err)
	}
	var rows bytes.Buffer
	for _, p := range pairs {
		b, err := chat.MarshalPair(p)
		if err != nil {
			t.Fatal(err)
		}
		rows.Write(append(b, '\n'))
	}
	in := filepath.Join(tmp, "prefs.jsonl")
	if err := os.WriteFile(in, rows.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "prefs")
	if _, err := shard.PrepareSFT(context.Background(), shard.SFTOptions{Inputs: []string{in}, Tokenizer: tok, TokenizerJSON: tj,
		OutDir: out, SeqLen: prefSeqLen, MinShards: 2, Preference: true, ValFraction: valFraction}); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return out
}

// prefSpec is tinySpec on a preference dataset: 2 streams of 2 pairs.
func prefSpec(data, out string, obj Objective) Spec {
	s := tinySpec(data, out)
	s.Objective, s.SeqLen, s.Streams, s.MicroBatch = obj, prefSeqLen, 2, 2
	if obj == DPO {
		s.InitFrom, s.Beta = "reference-set-by-the-test", 0.5
	}
	return s
}

// directRewards computes, one row at a time, the rewards of the pairs of the given
// streams at step (chosen at 2p, rejected at 2p+1): the reward model's score at each
// row's last answer token, or for dpo beta*(logp - logp_ref) with each row's summed
// answer log-probability read off the per-position losses.
func directRewards(t *testing.T, spec Spec, data BatchSource, m, ref *model.GPT, streams []int, step int64) []float64 {
	t.Helper()
	b, T := spec.MicroBatch, spec.SeqLen
	W := shard.PairSeqLen(T)
	pairIn, pairTg := make([]int32, b*W), make([]int32, b*W)
	rowIn, rowTg := make([]int32, 2*b*T), make([]int32, 2*b*T)
	var r []float64
	for _, stream := range streams {
		if err := data.Batch(t.Context(), stream, step, pairIn, pairTg); err != nil {
			t.Fatal(err)
		}
		if err := shard.SplitPairs(pairIn, pairTg, b, T, rowIn, rowTg); err != nil {
			t.Fatal(err)
		}
		for row := range 2 * b {
			in, tg := rowIn[row*T:(row+1)*T], rowTg[row*T:(row+1)*T]
			if spec.Objective == Reward {
				last := 0
				for i, v := range tg {
					if v >= 0 {
						last = i
					}
				}
				got, err := m.ForwardReward(in, []int{last}, 1, T)
				if err != nil {
					t.Fatal(err)
				}
				r = append(r, float64(got[0]))
				continue
			}
			logp := func(g *model.GPT) float64 {
				if _, _, err := g.Forward(in, tg, 1, T, true); err != nil {
					t.Fatal(err)
				}
				var s float64
				for i, l := range g.Losses()[:T] {
					if tg[i] >= 0 {
						s -= float64(l)
					}
				}
				return s
			}
			r = append(r, spec.Beta*(logp(m)-logp(ref)))
		}
	}
	return r
}

// checkMeasures compares step measures (as numbers in a record) with those of the
// rewards r computed directly.
func checkMeasures(t *testing.T, what string, acc, margin, chosen, rejected float64, r []float64) {
	t.Helper()
	var n, correct, sc, sr float64
	for p := 0; p+1 < len(r); p += 2 {
		n++
		sc += r[p]
		sr += r[p+1]
		if r[p] > r[p+1] {
			correct++
		}
	}
	close := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
			t.Errorf("%s: %s = %v, direct computation %v", what, name, got, want)
		}
	}
	if acc != correct/n {
		t.Errorf("%s: accuracy %v, direct computation %v of %v pairs", what, acc, correct, n)
	}
	close("mean margin", margin, (sc-sr)/n)
	close("mean chosen", chosen, sc/n)
	close("mean rejected", rejected, sr/n)
}

// TestPreferenceStepMeasures: the measures Gradients and GradientsExact leave in
// Trainer.Pref (and PrefFixed) for a step of the reward and dpo objectives are those
// computed directly, one row at a time, from the step's pairs: pair accuracy, mean
// margin and mean chosen and rejected rewards (dpo: implicit rewards against a
// reference that differs from the policy).
func TestPreferenceStepMeasures(t *testing.T) {
	data := preparePrefData(t, 60, 0)
	for _, obj := range []Objective{Reward, DPO} {
		t.Run(string(obj), func(t *testing.T) {
			spec := prefSpec(data, t.TempDir(), obj)
			tr, p := newTrainer(t, spec)
			var ref *model.GPT
			if obj == DPO {
				var err error
				if ref, err = model.New(tr.Spec.Model, nil); err != nil {
					t.Fatal(err)
				}
				ref.InitWeights(99)
				if err := tr.SetReference(ref); err != nil {
					t.Fatal(err)
				}
			}
			streams := tr.Spec.AllStreams()
			const step = 1
			want := directRewards(t, tr.Spec, p.Loader, tr.Model, ref, streams, step)
			if _, err := tr.Gradients(t.Context(), step, streams, nil); err != nil {
				t.Fatal(err)
			}
			st := tr.Pref
			if st.Pairs != int64(len(want)/2) || st.Pairs != int64(tr.Spec.GlobalBatch()) {
				t.Fatalf("Pref.Pairs = %d, want %d", st.Pairs, len(want)/2)
			}
			checkMeasures(t, "Gradients", st.Accuracy(), st.MeanMargin(), st.MeanChosen(), st.MeanRejected(), want)
			if c := st.Correct; c == 0 || c == st.Pairs {
				t.Logf("all or no pairs correct (%d of %d): the accuracy check is weak", c, st.Pairs)
			}
			// Summed stream by stream, the measures add up to those of the whole step.
			var sum PrefStats
			for _, s := range streams {
				if _, err := tr.Gradients(t.Context(), step, []int{s}, nil); err != nil {
					t.Fatal(err)
				}
				sum = sum.Add(tr.Pref)
			}
			checkMeasures(t, "streams summed", sum.Accuracy(), sum.MeanMargin(), sum.MeanChosen(), sum.MeanRejected(), want)
			acc := make([]int64, len(tr.Model.Grads.Slab))
			if _, err := tr.GradientsExact(t.Context(), step, streams, acc, nil); err != nil {
				t.Fatal(err)
			}
			fx := tr.PrefFixed.Stats()
			checkMeasures(t, "GradientsExact", fx.Accuracy(), fx.MeanMargin(), fx.MeanChosen(), fx.MeanRejected(), want)
			if fx.Pairs != st.Pairs || fx.Correct != st.Correct {
				t.Errorf("exact counts %d/%d, float %d/%d", fx.Correct, fx.Pairs, st.Correct, st.Pairs)
			}
			// The float summary a worker sends reads back as it went.
			buf := make([]float32, PrefSlots)
			st.Put(buf)
			if back := PrefStatsOf(buf); back.Pairs != st.Pairs || back.Correct != st.Correct ||
				math.Abs(back.MarginSum-st.MarginSum) > 1e-5*(1+math.Abs(st.MarginSum)) {
				t.Errorf("PrefStatsOf(Put(%+v)) = %+v", st, back)
			}
		})
	}
}

// TestPreferenceMetricsRecord: a reward run's metrics.jsonl carries reward_acc,
// reward_margin, reward_chosen and reward_rejected at every step, and the first
// step's are those of the initial weights computed directly; its tokens, tokens/s
// and the checkpoint's tokens_seen count both rows of every pair.
func TestPreferenceMetricsRecord(t *testing.T) {
	data := preparePrefData(t, 60, 0)
	spec := prefSpec(data, t.TempDir(), Reward)
	spec.Steps = 2
	res, err := Run(t.Context(), spec, RunOptions{NoTensorBoard: true})
	if err != nil {
		t.Fatal(err)
	}
	// A step computes both rows of each of its pairs: 2 streams x 2 pairs x 2 rows
	// of prefSeqLen tokens.
	const stepTokens = 2 * 2 * 2 * prefSeqLen
	if got := res.TokensPerSec * res.Elapsed.Seconds(); math.Abs(got-2*stepTokens) > 1e-6*stepTokens {
		t.Errorf("tokens/s x elapsed = %v tokens, want %d (2 steps of %d)", got, 2*stepTokens, stepTokens)
	}
	ck, err := model.LoadCheckpoint(res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Trainer.TokensSeen != 2*stepTokens {
		t.Errorf("checkpoint tokens_seen %d, want %d", ck.Trainer.TokensSeen, 2*stepTokens)
	}
	// Score reads a reward model with the template its pairs were rendered with.
	if ck.Trainer.ChatTemplate != "plain" {
		t.Errorf("checkpoint chat template %q, want the dataset's %q", ck.Trainer.ChatTemplate, "plain")
	}
	tr, p := newTrainer(t, spec) // the same initial weights: InitWeights(seed)
	want := directRewards(t, tr.Spec, p.Loader, tr.Model, nil, tr.Spec.AllStreams(), 0)
	recs := readMetrics(t, spec.Out)
	if len(recs) != int(spec.Steps) {
		t.Fatalf("%d records, want %d", len(recs), spec.Steps)
	}
	for _, rec := range recs {
		for _, k := range []string{"reward_acc", "reward_margin", "reward_chosen", "reward_rejected"} {
			if _, ok := rec[k].(float64); !ok {
				t.Fatalf("step %v: no %s in %v", rec["step"], k, rec)
			}
		}
	}
	for i, rec := range recs {
		if got := rec["tokens"].(float64); got != float64((i+1)*stepTokens) {
			t.Errorf("record %d: tokens %v, want %d", i, got, (i+1)*stepTokens)
		}
	}
	r := recs[0]
	checkMeasures(t, "step 1 record", r["reward_acc"].(float64), r["reward_margin"].(float64), r["reward_chosen"].(float64),
		r["reward_rejected"].(float64), want)
}

// TestEvaluatePreferenceEveryPair: evaluated in batches of 5, a validation split of
// 12 pairs is 2 whole batches and a partial one of 2 pairs, and every pair counts:
// the measures equal those of an evaluation one pair per batch (no partial batch),
// for the reward model and for dpo. A cap on the batches leaves the partial one out.
func TestEvaluatePreferenceEveryPair(t *testing.T) {
	data := preparePrefData(t, 60, 0.2)
	for _, obj := range []Objective{Reward, DPO} {
		t.Run(string(obj), func(t *testing.T) {
			eval := func(b, maxBatches int) PrefEval {
				spec := prefSpec(data, t.TempDir(), obj)
				spec.MicroBatch = b
				tr, p := newTrainer(t, spec)
				if obj == DPO {
					ref, err := model.New(tr.Spec.Model, nil)
					if err != nil {
						t.Fatal(err)
					}
					ref.InitWeights(99)
					if err := tr.SetReference(ref); err != nil {
						t.Fatal(err)
					}
				}
				val, err := p.Loader.Val(maxBatches)
				if err != nil {
					t.Fatal(err)
				}
				ev, err := tr.EvaluatePreference(t.Context(), val)
				if err != nil {
					t.Fatal(err)
				}
				return ev
			}
			one, five := eval(1, 0), eval(5, 0)
			if one.Pairs != 12 || one.Batches != 12 {
				t.Fatalf("one pair per batch: %d pairs in %d batches, want 12 in 12", one.Pairs, one.Batches)
			}
			if five.Pairs != 12 || five.Batches != 3 {
				t.Fatalf("batches of 5: %d pairs in %d batches, want 12 in 3 (the last of 2 pairs)", five.Pairs, five.Batches)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"loss", five.Loss, one.Loss}, {"accuracy", five.Accuracy, one.Accuracy}, {"mean margin", five.MeanMargin, one.MeanMargin},
				{"chosen mean", five.ChosenMean, one.ChosenMean}, {"rejected std", five.RejectedStd, one.RejectedStd},
				{"policy accuracy", five.PolicyAccuracy, one.PolicyAccuracy}} {
				if math.Abs(c.got-c.want) > 1e-5*(1+math.Abs(c.want)) {
					t.Errorf("%s: %v in batches of 5, %v one pair per batch", c.name, c.got, c.want)
				}
			}
			if capped := eval(5, 2); capped.Pairs != 10 || capped.Batches != 2 {
				t.Errorf("capped at 2 batches of 5: %d pairs in %d batches, want 10 in 2", capped.Pairs, capped.Batches)
			}
		})
	}
}

// TestDPONLL: with dpo_nll alpha the loss of a dpo step is plain DPO's plus alpha times
// the chosen answers' mean per-token NLL, computed directly one row at a time and
// averaged over the global batch's pairs; the gradient changes with it, and summed
// stream by stream it is the whole step's (the normalisation needs no other rank).
func TestDPONLL(t *testing.T) {
	data := preparePrefData(t, 60, 0)
	spec := prefSpec(data, t.TempDir(), DPO)
	tr, p := newTrainer(t, spec)
	ref, err := model.New(tr.Spec.Model, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref.InitWeights(99)
	if err := tr.SetReference(ref); err != nil {
		t.Fatal(err)
	}
	streams := tr.Spec.AllStreams()
	const step, alpha = 2, 0.75
	plain, err := tr.Gradients(t.Context(), step, streams, nil)
	if err != nil {
		t.Fatal(err)
	}
	plainGrads := append([]float32(nil), tr.Model.Grads.Slab...)

	// The chosen rows' mean per-token NLL, one row at a time.
	b, T := tr.Spec.MicroBatch, tr.Spec.SeqLen
	W := shard.PairSeqLen(T)
	pairIn, pairTg := make([]int32, b*W), make([]int32, b*W)
	rowIn, rowTg := make([]int32, 2*b*T), make([]int32, 2*b*T)
	var nll float64
	for _, stream := range streams {
		if err := p.Loader.Batch(t.Context(), stream, step, pairIn, pairTg); err != nil {
			t.Fatal(err)
		}
		if err := shard.SplitPairs(pairIn, pairTg, b, T, rowIn, rowTg); err != nil {
			t.Fatal(err)
		}
		for pair := range b {
			in, tg := rowIn[2*pair*T:(2*pair+1)*T], rowTg[2*pair*T:(2*pair+1)*T]
			if _, _, err := tr.Model.Forward(in, tg, 1, T, true); err != nil {
				t.Fatal(err)
			}
			var sum, n float64
			for i, l := range tr.Model.Losses()[:T] {
				if tg[i] >= 0 {
					sum += float64(l)
					n++
				}
			}
			if n == 0 {
				t.Fatalf("stream %d pair %d: a chosen answer without trained targets", stream, pair)
			}
			nll += sum / n
		}
	}
	pairs := float64(tr.Spec.GlobalBatch())

	tr.Spec.DPONLL = alpha
	got, err := tr.Gradients(t.Context(), step, streams, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := plain + alpha*nll
	if math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
		t.Fatalf("loss sum with dpo_nll %v: %v, want DPO's %v + %v * %v = %v", alpha, got, plain, alpha, nll, want)
	}
	if m := tr.MeanLoss(step, got); math.Abs(m-want/pairs) > 1e-4*(1+math.Abs(want/pairs)) {
		t.Fatalf("mean loss %v, want %v", m, want/pairs)
	}
	all := append([]float32(nil), tr.Model.Grads.Slab...)
	var diff float64
	for i := range all {
		diff = max(diff, math.Abs(float64(all[i]-plainGrads[i])))
	}
	if diff == 0 {
		t.Fatal("dpo_nll left the gradient unchanged")
	}
	summed := make([]float64, len(all))
	for _, s := range streams {
		if _, err := tr.Gradients(t.Context(), step, []int{s}, nil); err != nil {
			t.Fatal(err)
		}
		for i, g := range tr.Model.Grads.Slab {
			summed[i] += float64(g)
		}
	}
	for i := range all {
		if math.Abs(summed[i]-float64(all[i])) > 1e-6+1e-4*math.Abs(float64(all[i])) {
			t.Fatalf("grad[%d]: streams summed %v, whole step %v", i, summed[i], all[i])
		}
	}
}

// TestDPOReferenceIsFrozen: the reference a dpo trainer loads from init_from is a
// frozen model (model.NewFrozen): it has no gradient slab, so it costs its weights
// and forward buffers, not weights and gradients. The step it gives is the one a
// trainable copy of the same weights gives, bit for bit.
func TestDPOReferenceIsFrozen(t *testing.T) {
	data := preparePrefData(t, 60, 0)
	spec := prefSpec(data, t.TempDir(), DPO)
	// The reference: the policy's initial weights, perturbed so that the margins are
	// not all 0, saved as the checkpoint init_from names.
	src, p := newTrainer(t, spec)
	for i := range src.Model.Params.Slab {
		src.Model.Params.Slab[i] *= 1.01
	}
	dir, err := SaveCheckpoint(src, p, 1, math.NaN())
	if err != nil {
		t.Fatal(err)
	}
	spec.InitFrom = dir
	step := func(ref *model.GPT) (*Trainer, float64) {
		tr, _ := newTrainer(t, spec)
		if ref != nil {
			if err := tr.SetReference(ref); err != nil {
				t.Fatal(err)
			}
		}
		loss, err := tr.Gradients(t.Context(), 0, tr.Spec.AllStreams(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return tr, loss
	}
	tr, loss := step(nil)
	ref := tr.pref.ref
	if ref == nil {
		t.Fatal("no reference loaded")
	}
	if ref.Grads != nil {
		t.Fatalf("the dpo reference has a gradient slab of %d floats: it is only run forward", len(ref.Grads.Slab))
	}
	if err := ref.Backward(1, nil); !errors.Is(err, model.ErrShape) {
		t.Errorf("Backward on the reference: %v, want ErrShape (frozen)", err)
	}
	trainable, err := model.New(src.Spec.Model, nil)
	if err != nil {
		t.Fatal(err)
	}
	copy(trainable.Params.Slab, src.Model.Params.Slab)
	want, wantLoss := step(trainable)
	if loss != wantLoss {
		t.Errorf("loss %v with the frozen reference, %v with a trainable one", loss, wantLoss)
	}
	if i := firstBitDiff(tr.Model.Grads.Slab, want.Model.Grads.Slab); i >= 0 {
		t.Errorf("gradient %d differs: %v with the frozen reference, %v with a trainable one", i, tr.Model.Grads.Slab[i], want.Model.Grads.Slab[i])
	}
	if tr.Pref != want.Pref || tr.Pref.MarginSum == 0 {
		t.Errorf("measures %+v with the frozen reference, %+v with a trainable one (margins must not be 0)", tr.Pref, want.Pref)
	}
}
