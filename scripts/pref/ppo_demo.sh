#!/usr/bin/env bash
# RLHF demonstration on synthetic tasks: an SFT model is tuned from scratch on the
# tasks' correct answers (checkpoints every 150 steps), a reward model is trained
# from its last checkpoint on preference pairs (the rejected answer a corrupted one:
# two words swapped, letters of a word changed, a word too many or too few), and an early SFT
# checkpoint (step 150, which leaves room to improve; PPO_FROM=last for the last one)
# is tuned with PPO against the reward model (its scores standardised over each
# step's batch, --whiten-rewards), with a KL penalty to itself whose coefficient an
# adaptive controller moves to hold the KL near TARGET_KL.
# It prints, on held-out prompts (the SFT dataset's validation prompts, never
# trained on), the mean reward-model score of sampled (temperature 1) and greedy
# answers and the exact-match rate of the greedy ones, before and after PPO (and of
# the last SFT checkpoint, for scale), and the KL from the reference of the last PPO
# steps against the target.
#
#   scripts/pref/ppo_demo.sh [WORKDIR]        (default: a fresh temporary directory)
#
# Environment: RINGTRAIN (binary; built from this checkout when unset), TASKS
# (default reverse,sort), SFT_STEPS, RM_STEPS, PPO_STEPS, BETA (the KL coefficient,
# or its start), TARGET_KL (nats per answer; 0 keeps BETA fixed), KL_HORIZON (the
# controller's horizon in answers), PPO_FROM (150 or last), PPO_LR, PPO_BATCH,
# WORKERS (default 1: 'ringtrain train', one process; N > 1: the PPO run on an
# in-process cluster of N workers, 'ringtrain local'; the batch is in 4 data streams
# either way), RM (a reward model checkpoint to use instead of training one; it
# must share the byte tokenizer and plain template, e.g. scripts/pref/demo.sh's). A
# WORKDIR that already holds the SFT and reward model runs reuses them. Needs python3 (to put the generated answers into conversations).
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
SFT_STEPS=${SFT_STEPS:-600}
RM_STEPS=${RM_STEPS:-600}
PPO_STEPS=${PPO_STEPS:-60}
BETA=${BETA:-0.1}
TARGET_KL=${TARGET_KL:-3}
KL_HORIZON=${KL_HORIZON:-128}
PPO_FROM=${PPO_FROM:-150}
PPO_LR=${PPO_LR:-5e-5}
PPO_BATCH=${PPO_BATCH:-32}
WORKERS=${WORKERS:-1}
MAX_NEW=12 # the tasks' answers are at most 11 bytes and an end-of-text
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

if [[ ! -d "$work/sft/ckpt" ]]; then
  stamp "1. data: synthetic $TASKS, instruction rows (also PPO's prompts) and preference pairs (byte tokenizer)"
  rt prepare --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 100 \
    --tokenizer byte --seq 64 --out "$work/sft-data" --overwrite
  rt prepare --format preference --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 100 --seed 2024 \
    --tokenizer byte --seq 64 --out "$work/pref-data" --overwrite
  stamp "2. SFT from scratch for $SFT_STEPS steps"
  rt train --objective sft --data "$work/sft-data" --out "$work/sft" --layers 4 --heads 4 --embd 128 \
    --seq 64 --batch 16 --steps "$SFT_STEPS" --lr 2e-3 --warmup 30 --log-interval 200 \
    --checkpoint-interval 150 --eval-batches 0 --tensorboard=false | tail -1
fi
sft_last=$(ls -d "$work"/sft/ckpt/step-* | tail -1)
sft_early=$work/sft/ckpt/step-000150
if [[ $PPO_FROM == last ]]; then sft_early=$sft_last; fi
if [[ -n "${RM:-}" ]]; then
  rm=$RM
elif [[ ! -d "$work/rm/ckpt" ]]; then
  stamp "3. reward model from $sft_last for $RM_STEPS steps"
  rt train --objective reward --data "$work/pref-data" --init-from "$sft_last" --out "$work/rm" \
    --seq 64 --batch 16 --steps "$RM_STEPS" --lr 5e-4 --warmup 30 --log-interval 200 \
    --eval-batches 0 --tensorboard=false | tail -1
fi
rm=${RM:-$(ls -d "$work"/rm/ckpt/step-* | tail -1)}

kl_flags=()
if [[ $TARGET_KL != 0 ]]; then kl_flags=(--target-kl "$TARGET_KL" --kl-horizon "$KL_HORIZON"); fi
stamp "4. PPO from $sft_early against $rm for $PPO_STEPS steps (beta $BETA, target KL $TARGET_KL)"
rm -rf "$work/ppo" "$work/ppo.cluster"
run=(train)
if (( WORKERS > 1 )); then run=(local --workers "$WORKERS" --dir "$work/ppo.cluster"); fi
rt "${run[@]}" --streams 4 --objective ppo --prompts "$work/sft-data" --init-from "$sft_early" --reward-model "$rm" --out "$work/ppo" \
  --seq 64 --batch "$PPO_BATCH" --steps "$PPO_STEPS" --lr "$PPO_LR" --min-lr "$PPO_LR" --warmup 0 --beta "$BETA" \
  "${kl_flags[@]}" --whiten-rewards --max-new-tokens "$MAX_NEW" --log-interval 10 --eval-batches 0 --tensorboard=false | tail -1
ppo=$(ls -d "$work"/ppo/ckpt/step-* | tail -1)

stamp "5. held-out prompts ($work/sft-data/synthetic/val.jsonl)"
val=$work/sft-data/synthetic/val.jsonl
# score MODE TAG CKPT: the mean reward-model score of CKPT's answers (and, greedy,
# the exact-match rate generate prints).
score() {
  local mode=$1 tag=$2 ck=$3 o
  if [[ $mode == sampled ]]; then o=(--temperature 1 --top-k 0 --seed 7); else o=(--temperature 0); fi
  rt generate --checkpoint "$ck" --prompts "$val" --out "$work/gen-$tag-$mode.jsonl" "${o[@]}" \
    --max-tokens "$MAX_NEW" --batch 16 > "$work/gen-$tag-$mode.txt"
  python3 - "$work/gen-$tag-$mode.jsonl" > "$work/ans-$tag-$mode.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    msgs = [m for m in r["messages"] if m["role"] != "assistant"]
    print(json.dumps({"messages": msgs + [{"role": "assistant", "content": r["completion"]}]}))
PY
  rt score --checkpoint "$rm" --in "$work/ans-$tag-$mode.jsonl" |
    awk -F'"reward":' '{split($2, a, "}"); s += a[1]; n++} END {printf "%.3f", s/n}'
}
exact() { sed -n 's/^exact match: .* = \(.*\)$/\1/p' "$work/gen-$1-greedy.txt"; }
row() { echo "| $1 | $(score sampled "$2" "$3") | $(score greedy "$2" "$3") | $(exact "$2") |"; }
kl=$(tail -10 "$work/ppo/metrics.jsonl" | awk -F'"ppo_kl":' '{split($2, a, ","); s += a[1]; n++} END {printf "%.2f", s/n}')
echo
echo "| policy | mean RM score, sampled (T=1) | mean RM score, greedy | greedy exact match |"
echo "|---|---|---|---|"
row "SFT $(basename "$sft_early") (PPO's start and reference)" sftstart "$sft_early"
row "PPO, $PPO_STEPS steps from it" ppo "$ppo"
row "SFT $(basename "$sft_last") (the reward model's start, for scale)" sftlast "$sft_last"
echo
beta=$(tail -1 "$work/ppo/metrics.jsonl" | sed -n 's/.*"ppo_beta":\([^,}]*\).*/\1/p')
echo "KL(policy || reference) per answer, mean over the last 10 PPO steps: $kl nats (target $TARGET_KL; beta at the last step $beta)"
echo "per 10 steps: reward, KL, beta"
awk -F'"ppo_' '{for (i = 2; i <= NF; i++) {split($i, a, /[":,}]+/); v[a[1]] = a[2]}
  r += v["reward"]; k += v["kl"]; b += v["beta"]; n++
  if (n == 10) {printf "  steps %d-%d: %.2f %.2f %.4f\n", NR-9, NR, r/n, k/n, b/n; r = k = b = n = 0}}' "$work/ppo/metrics.jsonl"
stamp "done"
