package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/trainer"
)

// TestPPOCommands runs the ppo path from the command line: prepare (prompts and
// pairs), train sft, reward and ppo (--prompts, --reward-model and the ppo flags),
// the metrics' ppo fields, generate with the ppo checkpoint, and export, which writes
// a plain language model and the value head's side file.
func TestPPOCommands(t *testing.T) {
	tmp := t.TempDir()
	prefs, prompts := filepath.Join(tmp, "prefs"), filepath.Join(tmp, "prompts")
	mustRun(t, "prepare", "--format", "preference", "--synthetic", "reverse", "--synthetic-examples", "40", "--synthetic-val", "8",
		"--tokenizer", "byte", "--seq", "64", "--min-shards", "2", "--out", prefs)
	mustRun(t, "prepare", "--synthetic", "reverse", "--synthetic-examples", "40", "--synthetic-val", "8",
		"--tokenizer", "byte", "--seq", "64", "--min-shards", "2", "--out", prompts)
	sft := filepath.Join(tmp, "sft")
	if out := mustRun(t, "train", "--data", prompts, "--out", sft, "--layers", "1", "--heads", "2", "--embd", "16",
		"--seq", "64", "--batch", "4", "--steps", "2", "--eval-batches", "0", "--tensorboard=false"); !strings.Contains(out, "train loss") ||
		!strings.Contains(out, ", no val loss,") || strings.Contains(out, "NaN") {
		t.Errorf("train --eval-batches 0: the done line should say there is no val loss:\n%s", out)
	}
	sftCk := filepath.Join(sft, "ckpt", "step-000002")
	rm := filepath.Join(tmp, "rm")
	mustRun(t, "train", "--objective", "reward", "--data", prefs, "--init-from", sftCk, "--out", rm,
		"--seq", "64", "--batch", "4", "--steps", "2", "--eval-batches", "0", "--tensorboard=false")
	rmCk := filepath.Join(rm, "ckpt", "step-000002")

	ppo := filepath.Join(tmp, "ppo")
	out := mustRun(t, "train", "--objective", "ppo", "--prompts", prompts, "--init-from", sftCk, "--reward-model", rmCk,
		"--out", ppo, "--seq", "64", "--batch", "4", "--steps", "2", "--ppo-epochs", "2", "--max-new-tokens", "6",
		"--beta", "0.2", "--target-kl", "0.5", "--kl-horizon", "8", "--min-beta", "0.01", "--whiten-rewards", "--eval-batches", "0", "--log-interval", "1", "--tensorboard=false")
	for _, want := range []string{"ppo objective", "batch: 4 prompts", "done: step 2,"} {
		if !strings.Contains(out, want) {
			t.Errorf("train --objective ppo output lacks %q:\n%s", want, out)
		}
	}
	ppoCk := filepath.Join(ppo, "ckpt", "step-000002")
	ck, err := model.LoadCheckpoint(ppoCk)
	if err != nil {
		t.Fatal(err)
	}
	if !ck.Config.ValueHead || ck.Trainer.ChatTemplate == "" {
		t.Errorf("ppo checkpoint: value head %v, chat template %q", ck.Config.ValueHead, ck.Trainer.ChatTemplate)
	}
	var job struct {
		Beta float64 `json:"beta"`
		PPO  struct {
			RewardModel  string  `json:"reward_model"`
			Epochs       int     `json:"epochs"`
			MaxNewTokens int     `json:"max_new_tokens"`
			TargetKL     float64 `json:"target_kl"`
			KLHorizon    int     `json:"kl_horizon"`
			MinBeta      float64 `json:"min_beta"`
			MaxBeta      float64 `json:"max_beta"`
			Whiten       bool    `json:"whiten_rewards"`
		} `json:"ppo"`
	}
	if err := json.Unmarshal(ck.Trainer.Job, &job); err != nil || job.PPO.RewardModel != rmCk || job.PPO.Epochs != 2 || job.PPO.MaxNewTokens != 6 || job.Beta != 0.2 ||
		job.PPO.TargetKL != 0.5 || job.PPO.KLHorizon != 8 || job.PPO.MinBeta != 0.01 || job.PPO.MaxBeta != 0.2*trainer.DefaultBetaRange || !job.PPO.Whiten {
		t.Errorf("the checkpoint's job %s (%v)", ck.Trainer.Job, err)
	}
	f, err := os.Open(filepath.Join(ppo, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var last map[string]any
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"ppo_reward", "ppo_kl", "ppo_entropy", "ppo_clip_frac", "ppo_value_loss", "ppo_policy_loss", "ppo_response_len", "ppo_beta"} {
			if _, ok := rec[k].(float64); !ok {
				t.Errorf("metrics record %v lacks %s", rec, k)
			}
		}
		if rec["step"] == 1.0 && rec["ppo_beta"] != 0.2 {
			t.Errorf("step 1 used beta %v, want --beta 0.2", rec["ppo_beta"])
		}
		last = rec
	}
	// The checkpoint holds the coefficient the adaptive controller made of the last
	// step's: beta*(1 + e*4/8), e the relative KL error clipped to ±0.2.
	if kl, beta := last["ppo_kl"].(float64), last["ppo_beta"].(float64); ck.Trainer.PPOBeta == nil ||
		math.Abs(*ck.Trainer.PPOBeta-beta*(1+min(max(kl/0.5-1, -0.2), 0.2)*0.5)) > 1e-12 {
		t.Errorf("checkpoint ppo_beta %v after a step at beta %v with KL %v", ck.Trainer.PPOBeta, beta, kl)
	}

	// A ppo policy is evaluated as the language model it is, on the SFT answers.
	if out := mustRun(t, "eval", "--checkpoint", ppoCk, "--data", prompts); !strings.Contains(out, "sft objective") {
		t.Errorf("eval of the ppo checkpoint:\n%s", out)
	}
	mustRun(t, "generate", "--checkpoint", ppoCk, "--prompt", "Reverse: cat dog", "--max-tokens", "4", "--seed", "3")
	exp := filepath.Join(tmp, "hf")
	mustRun(t, "export", "--checkpoint", ppoCk, "--out", exp)
	cfg, _, err := model.ImportHF(exp)
	if err != nil || cfg.ValueHead {
		t.Errorf("export: imported config %+v (%v), want a plain language model", cfg, err)
	}
	if _, err := os.Stat(filepath.Join(exp, model.ValueHeadFile)); err != nil {
		t.Errorf("export wrote no value head side file: %v", err)
	}
	if _, err := ringtrain(t, "train", "--objective", "ppo", "--prompts", prefs, "--init-from", sftCk, "--reward-model", rmCk,
		"--out", filepath.Join(tmp, "bad"), "--seq", "64", "--batch", "4", "--steps", "1"); err == nil || !strings.Contains(err.Error(), "SFT dataset") {
		t.Errorf("ppo on a preference dataset: %v", err)
	}
}
