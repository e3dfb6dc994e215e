#!/usr/bin/env bash
# RLHF demonstration on synthetic tasks with known ground truth: an SFT model is
# tuned from scratch on the tasks' correct answers, a reward model is trained from it
# on preference pairs (the rejected answer a corrupted one of the same length), and
# the SFT model is then tuned with PPO against the reward model, with a KL penalty to
# itself. It prints, on held-out prompts (the SFT dataset's validation prompts, never
# trained on), the mean reward-model score of sampled (temperature 1) and greedy
# answers, and the share of greedy answers that are exactly right, before and after
# PPO, and the KL from the reference of the last PPO steps.
#
#   scripts/pref/ppo_demo.sh [WORKDIR]        (default: a fresh temporary directory)
#
# Environment: RINGTRAIN (binary; built from this checkout when unset), TASKS
# (default reverse,sort), SFT_STEPS, RM_STEPS, PPO_STEPS, BETA (KL coefficient),
# PPO_LR. A WORKDIR that already holds the SFT and reward model checkpoints reuses
# them.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/ringtrain-ppo-demo.XXXXXX)}
mkdir -p "$work"
if [[ -z "${RINGTRAIN:-}" ]]; then
  (cd "$here" && GOTOOLCHAIN=local go build -o "$work/ringtrain" ./cmd/ringtrain)
  RINGTRAIN=$work/ringtrain
fi
rt() { "$RINGTRAIN" --log-level warn "$@"; }
TASKS=${TASKS:-reverse,sort}
SFT_STEPS=${SFT_STEPS:-150}
RM_STEPS=${RM_STEPS:-600}
PPO_STEPS=${PPO_STEPS:-60}
BETA=${BETA:-0.05}
PPO_LR=${PPO_LR:-5e-5}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

if [[ ! -d "$work/sft/ckpt" ]]; then
  stamp "1. data: synthetic $TASKS, instruction rows (the prompts) and preference pairs (byte tokenizer)"
  rt prepare --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 100 \
    --tokenizer byte --seq 64 --out "$work/sft-data" --overwrite
  rt prepare --format preference --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 100 --seed 2024 \
    --tokenizer byte --seq 64 --out "$work/pref-data" --overwrite
  stamp "2. SFT from scratch for $SFT_STEPS steps"
  rt train --objective sft --data "$work/sft-data" --out "$work/sft" --layers 4 --heads 4 --embd 128 \
    --seq 64 --batch 16 --steps "$SFT_STEPS" --lr 2e-3 --warmup 30 --log-interval 200 \
    --eval-batches 0 --tensorboard=false | tail -1
fi
sft=$(ls -d "$work"/sft/ckpt/step-* | tail -1)
if [[ ! -d "$work/rm/ckpt" ]]; then
  stamp "3. reward model from $sft for $RM_STEPS steps"
  rt train --objective reward --data "$work/pref-data" --init-from "$sft" --out "$work/rm" \
    --seq 64 --batch 16 --steps "$RM_STEPS" --lr 5e-4 --warmup 30 --log-interval 200 \
    --eval-batches 0 --tensorboard=false | tail -1
fi
rm=$(ls -d "$work"/rm/ckpt/step-* | tail -1)

stamp "4. PPO from $sft against $rm for $PPO_STEPS steps (beta $BETA)"
rm -rf "$work/ppo"
rt train --objective ppo --prompts "$work/sft-data" --init-from "$sft" --reward-model "$rm" --out "$work/ppo" \
  --seq 64 --batch 16 --steps "$PPO_STEPS" --lr "$PPO_LR" --min-lr "$PPO_LR" --warmup 0 --beta "$BETA" \
  --log-interval 10 --eval-batches 0 --tensorboard=false | tail -1
ppo=$(ls -d "$work"/ppo/ckpt/step-* | tail -1)

stamp "5. held-out prompts ($work/sft-data/synthetic/val.jsonl)"
val=$work/sft-data/synthetic/val.jsonl
mean() { awk -F'"reward":' '{split($2, a, "}"); s += a[1]; n++} END {printf "%.3f", s/n}' "$1"; }
exact() { grep -c '"exact_match":true' "$1" | awk -v n="$(wc -l < "$1")" '{printf "%.3f", $1/n}'; }
for m in sft ppo; do
  ck=$sft; [[ $m == ppo ]] && ck=$ppo
  rt generate --checkpoint "$ck" --prompts "$val" --out "$work/gen-$m-t1.jsonl" --temperature 1 --top-k 0 --max-tokens 32 --seed 7 --batch 16 >/dev/null
  rt generate --checkpoint "$ck" --prompts "$val" --out "$work/gen-$m-greedy.jsonl" --temperature 0 --max-tokens 32 --batch 16 >/dev/null
  rt score --checkpoint "$rm" --in "$work/gen-$m-t1.jsonl" --columns completion=generated > "$work/score-$m-t1.jsonl"
  rt score --checkpoint "$rm" --in "$work/gen-$m-greedy.jsonl" --columns completion=generated > "$work/score-$m-greedy.jsonl"
done
kl=$(tail -10 "$work/ppo/metrics.jsonl" | awk -F'"ppo_kl":' '{split($2, a, ","); s += a[1]; n++} END {printf "%.3f", s/n}')
echo
echo "| policy | mean RM score, sampled (T=1) | mean RM score, greedy | greedy exact match |"
echo "|---|---|---|---|"
echo "| SFT (before PPO) | $(mean "$work/score-sft-t1.jsonl") | $(mean "$work/score-sft-greedy.jsonl") | $(exact "$work/gen-sft-greedy.jsonl") |"
echo "| PPO (after $PPO_STEPS steps) | $(mean "$work/score-ppo-t1.jsonl") | $(mean "$work/score-ppo-greedy.jsonl") | $(exact "$work/gen-ppo-greedy.jsonl") |"
echo
echo "KL(policy || SFT) per answer, mean of the last 10 PPO steps: $kl nats"
stamp "done"
