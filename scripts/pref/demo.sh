#!/usr/bin/env bash
# Preference-learning demonstration on synthetic tasks with known ground truth: an
# SFT model is tuned from scratch on the tasks' correct answers, then a reward model
# (Bradley-Terry) and a DPO policy are trained from it on preference pairs whose
# rejected answer is a corrupted one of the same length (two words swapped, a wrong
# sum with as many digits, a word left in lower case). It prints held-out pair
# accuracy: the reward model's, and the policy's own ranking (is the chosen answer
# the more likely one?) before and after DPO; and the exact match of the SFT and the
# DPO policy's greedy answers to the held-out pairs' prompts (their chosen answers
# are the correct ones).
#
#   scripts/pref/demo.sh [WORKDIR]        (default: a fresh temporary directory)
#
# Environment: RINGTRAIN (binary; built from this checkout when unset), TASKS
# (default reverse,sort), SFT_STEPS, RM_STEPS, DPO_STEPS, BETA, DPO_LR.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/ringtrain-pref-demo.XXXXXX)}
mkdir -p "$work"
if [[ -z "${RINGTRAIN:-}" ]]; then
  (cd "$here" && GOTOOLCHAIN=local go build -o "$work/ringtrain" ./cmd/ringtrain)
  RINGTRAIN=$work/ringtrain
fi
rt() { "$RINGTRAIN" --log-level warn "$@"; }
TASKS=${TASKS:-reverse,sort}
SFT_STEPS=${SFT_STEPS:-150}
RM_STEPS=${RM_STEPS:-1200}
DPO_STEPS=${DPO_STEPS:-300}
BETA=${BETA:-0.1}
DPO_LR=${DPO_LR:-2e-4}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "1. data: synthetic $TASKS, instruction rows and preference pairs (byte tokenizer)"
rt prepare --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 200 \
  --tokenizer byte --seq 64 --out "$work/sft-data" --overwrite
rt prepare --format preference --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 200 --seed 2024 \
  --tokenizer byte --seq 64 --out "$work/pref-data" --overwrite

stamp "2. SFT from scratch for $SFT_STEPS steps"
rt train --objective sft --data "$work/sft-data" --out "$work/sft" --layers 4 --heads 4 --embd 128 \
  --seq 64 --batch 16 --steps "$SFT_STEPS" --lr 2e-3 --warmup 30 --log-interval 200 \
  --eval-batches 10 --tensorboard=false | tail -1
sft=$(ls -d "$work"/sft/ckpt/step-* | tail -1)

stamp "3. reward model from $sft for $RM_STEPS steps"
rt train --objective reward --data "$work/pref-data" --init-from "$sft" --out "$work/rm" \
  --seq 64 --batch 16 --steps "$RM_STEPS" --lr 5e-4 --warmup 30 --log-interval 200 \
  --eval-batches 10 --tensorboard=false | tail -1
rm=$(ls -d "$work"/rm/ckpt/step-* | tail -1)

stamp "4. DPO from $sft for $DPO_STEPS steps (beta $BETA, lr $DPO_LR)"
rt train --objective dpo --beta "$BETA" --data "$work/pref-data" --init-from "$sft" --out "$work/dpo" \
  --seq 64 --batch 16 --steps "$DPO_STEPS" --lr "$DPO_LR" --warmup 20 --log-interval 100 \
  --eval-batches 10 --tensorboard=false | tail -1
dpo=$(ls -d "$work"/dpo/ckpt/step-* | tail -1)

stamp "5. held-out pairs"
rt eval --checkpoint "$rm" --data "$work/pref-data" | tee "$work/eval-rm.txt"
rt eval --checkpoint "$sft" --data "$work/pref-data" --objective dpo | tee "$work/eval-sft.txt"
rt eval --checkpoint "$dpo" --data "$work/pref-data" | tee "$work/eval-dpo.txt"

# The held-out pairs' prompts, answered greedily, against their chosen (correct)
# answers. The pairs are held out of the reward and DPO training, the SFT rows come
# from another seed; how many held-out prompts a training set also holds (the
# tasks' vocabulary is small) is printed.
stamp "6. exact match on the $(wc -l < "$work/pref-data/synthetic/val.jsonl") held-out pairs' prompts"
python3 - "$work/pref-data/synthetic/val.jsonl" "$work/sft-data/synthetic/train.jsonl" "$work/pref-data/synthetic/train.jsonl" <<'PY'
import json, sys
def prompt(row):
    r = json.loads(row)
    return r["chosen"][0]["content"] if "chosen" in r else (r.get("prompt") or r["messages"][0]["content"])
held = [prompt(l) for l in open(sys.argv[1])]
for name, path in (("SFT", sys.argv[2]), ("preference", sys.argv[3])):
    seen = {prompt(l) for l in open(path)}
    print(f"  {sum(p in seen for p in held)} of the {len(held)} held-out prompts are also {name} training prompts")
PY
for m in sft dpo; do
  rt eval --checkpoint "${!m}" --exact-match "$work/pref-data/synthetic/val.jsonl" --columns messages=chosen --json \
    | tee "$work/em-$m.json"
done
acc() { sed -n 's/.*accuracy \([0-9.]*\),.*/\1/p' "$1" | head -1; }
pol() { sed -n 's/^policy accuracy.*: \([0-9.]*\)$/\1/p' "$1"; }
em() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(f"{r[\"exact_match\"]:.4f} ({r[\"correct\"]} of {r[\"examples\"]})")' "$1"; }
echo
echo "| model | held-out pair accuracy | held-out exact match |"
echo "|---|---|---|"
echo "| reward model (r_chosen > r_rejected) | $(acc "$work/eval-rm.txt") | |"
echo "| SFT policy (logp_chosen > logp_rejected) | $(pol "$work/eval-sft.txt") | $(em "$work/em-sft.json") |"
echo "| DPO policy (logp_chosen > logp_rejected) | $(pol "$work/eval-dpo.txt") | $(em "$work/em-dpo.json") |"
echo "| DPO implicit reward (beta*(pi-ref), chosen > rejected) | $(acc "$work/eval-dpo.txt") | |"
stamp "done"
