package system_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	ppoOnce           sync.Once
	ppoErr            error
	ppoRefOnce        sync.Once
	ppoRefOut         *outcome
	ppoInit, ppoRewdM string // the sft and reward model checkpoints of the ppo job
)

// sharedPPO prepares, once per test binary and with the binary itself, what the ppo
// job starts from: a short sft run on the SFT job's data (the policy's start and
// reference, in the fault job's model shape) and a short reward-model run from it on
// synthetic preference pairs of the same tasks.
func sharedPPO(t *testing.T) (init, rm string) {
	t.Helper()
	bin, sft := sharedSFT(t)
	ppoOnce.Do(func() {
		dir := filepath.Join(sharedDir, "ppo")
		pref := filepath.Join(dir, "pref")
		runs := [][]string{
			{"train", "--objective", "sft", "--data", sft, "--out", filepath.Join(dir, "sft"), "--layers", "2", "--heads", "4",
				"--embd", "96", "--seq", "64", "--batch", "12", "--steps", "60", "--lr", "3e-3", "--warmup", "10",
				"--eval-batches", "0", "--tensorboard=false"},
			{"prepare", "--format", "preference", "--synthetic", "upper,reverse", "--synthetic-examples", "500",
				"--tokenizer", "byte", "--seq", "64", "--out", pref},
			{"train", "--objective", "reward", "--data", pref, "--init-from", filepath.Join(dir, "sft", "ckpt", "step-000060"),
				"--out", filepath.Join(dir, "rm"), "--seq", "64", "--batch", "12", "--steps", "40", "--lr", "1e-3", "--warmup", "10",
				"--eval-batches", "0", "--tensorboard=false"},
		}
		for _, args := range runs {
			if out, err := exec.Command(bin, append([]string{"--log-level", "warn"}, args...)...).CombinedOutput(); err != nil {
				ppoErr = fmt.Errorf("%v: %v\n%s", args[:3], err, out)
				return
			}
		}
		ppoInit, ppoRewdM = filepath.Join(dir, "sft", "ckpt", "step-000060"), filepath.Join(dir, "rm", "ckpt", "step-000040")
	})
	if ppoErr != nil {
		t.Fatal(ppoErr)
	}
	return ppoInit, ppoRewdM
}

// ppoJobYAML is the part of the fault job's spec that makes it a ppo job.
func ppoJobYAML(t *testing.T) string {
	init, rm := sharedPPO(t)
	return fmt.Sprintf("init_from: %s\nbeta: 0.05\nppo: {reward_model: %s, max_new_tokens: 8, epochs: 2}\n", init, rm)
}

// referencePPO is the fault-free run of the ppo job on three workers.
func referencePPO(t *testing.T) *outcome {
	t.Helper()
	return referenceOf(t, ppoJob, &ppoRefOnce, &ppoRefOut)
}

// TestFaultsPPO: a worker of a ppo job (exact mode) is killed and comes back; the job
// recovers (a step in flight is recomputed: its rollouts are sampled again with the
// same seeds, and the inner PPO updates of a step that failed are undone first), the
// audit lineage verifies, and the final weights are the fault-free run's bit for bit.
func TestFaultsPPO(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fault suite: skipped with -short")
	}
	mk := func(t *testing.T, n, minWorkers, maxWorkers int, coordFlags ...string) *cluster {
		return newClusterJob(t, nil, ppoJob, n, minWorkers, maxWorkers, coordFlags...)
	}
	var kill []scenario
	for _, sc := range commonScenarios(mk) {
		if sc.name == "kill-worker" {
			kill = append(kill, sc)
		}
	}
	runScenarios(t, "ppo/", referencePPO(t), kill)
}
