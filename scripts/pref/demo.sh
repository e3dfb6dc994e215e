#!/usr/bin/env bash
# Preference-learning demonstration on synthetic tasks with known ground truth: an
# SFT model is tuned from scratch on the tasks' correct answers, then a reward model
# (Bradley-Terry) and a DPO policy are trained from it on preference pairs whose
# rejected answer is a corrupted one of the same length (two words swapped, a wrong
# sum with as many digits, a word left in lower case), and a second DPO policy on
# pairs whose rejected answer is the SFT model's own wrong greedy answer to a
# training prompt. It prints, on held-out pairs, the reward model's accuracy, each
# policy's own ranking (is the chosen answer the more likely one?), and the exact
# match of each policy's greedy answers to the pairs' prompts (the chosen answers are
# the correct ones): SFT before, DPO after.
#
#   scripts/pref/demo.sh [WORKDIR]        (default: a fresh temporary directory)
#
# Environment: RINGTRAIN (binary; built from this checkout when unset), TASKS
# (default reverse,sort), SFT_STEPS, RM_STEPS, DPO_STEPS, BETA, DPO_LR, DPO_NLL
# (the weight of the NLL term on the chosen answers, --dpo-nll; 0 is plain DPO),
# OWN_STEPS (the DPO on the SFT model's own mistakes; 0 skips it), VAL (held-out
# examples drawn per task before those whose prompt a training set holds are left
# out; default 200), WORKERS (default 1: 'ringtrain train', one process; N > 1: the
# reward and DPO runs on an in-process cluster of N workers, 'ringtrain local'),
# REUSE=1 (keep
# the stages whose outputs WORKDIR already holds: the data sets, the SFT and reward
# models, the own-mistakes pairs, and each DPO run's checkpoint; delete a stage's
# directory to rerun it).
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
SFT_STEPS=${SFT_STEPS:-400}
RM_STEPS=${RM_STEPS:-1200}
DPO_STEPS=${DPO_STEPS:-300}
BETA=${BETA:-1.0}
DPO_LR=${DPO_LR:-5e-5}
DPO_NLL=${DPO_NLL:-0}
OWN_STEPS=${OWN_STEPS:-200}
VAL=${VAL:-200}
WORKERS=${WORKERS:-1}
REUSE=${REUSE:-0}
# fit OUT FLAGS...: a training run into OUT, on one process or WORKERS workers, its
# batch in 4 data streams either way (the same trajectory for any worker count).
fit() {
  local out=$1
  shift
  if (( WORKERS > 1 )); then
    rt local --workers "$WORKERS" --streams 4 --dir "$out.cluster" --out "$out" "$@"
  else
    rt train --streams 4 --out "$out" "$@"
  fi
}
# have DIR: REUSE is set and DIR exists (a data set, pairs file or run to keep).
have() { [[ "$REUSE" == 1 && -e "$1" ]]; }
ckpt() { ls -d "$1"/ckpt/step-* | tail -1; }
min_lr=$(python3 -c "print($DPO_LR / 10)")
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "1. data: synthetic $TASKS, instruction rows and preference pairs (byte tokenizer)"
if ! have "$work/sft-data"; then
  rt prepare --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 200 \
    --tokenizer byte --seq 64 --out "$work/sft-data" --overwrite
fi
if ! have "$work/pref-data"; then
  rt prepare --format preference --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val "$VAL" --seed 2024 \
    --tokenizer byte --seq 64 --out "$work/pref-data" --overwrite
fi
held=$work/pref-data/synthetic/val.jsonl

stamp "2. SFT from scratch for $SFT_STEPS steps"
if ! have "$work/sft"; then
  rt train --objective sft --data "$work/sft-data" --out "$work/sft" --layers 4 --heads 4 --embd 128 \
    --seq 64 --batch 16 --steps "$SFT_STEPS" --lr 2e-3 --warmup 30 --log-interval 200 \
    --eval-batches 10 --tensorboard=false | tail -1
fi
sft=$(ckpt "$work/sft")

stamp "3. reward model from $sft for $RM_STEPS steps"
if ! have "$work/rm"; then
  fit "$work/rm" --objective reward --data "$work/pref-data" --init-from "$sft" \
    --seq 64 --batch 16 --steps "$RM_STEPS" --lr 5e-4 --warmup 30 --log-interval 200 \
    --eval-batches 10 --tensorboard=false | tail -1
fi
rm=$(ckpt "$work/rm")

stamp "4. DPO from $sft for $DPO_STEPS steps (beta $BETA, dpo_nll $DPO_NLL, lr $DPO_LR)"
if ! have "$work/dpo"; then
  fit "$work/dpo" --objective dpo --beta "$BETA" --dpo-nll "$DPO_NLL" --data "$work/pref-data" --init-from "$sft" \
    --seq 64 --batch 16 --steps "$DPO_STEPS" --lr "$DPO_LR" --min-lr "$min_lr" --warmup 20 --log-interval 100 \
    --eval-batches 10 --tensorboard=false | tail -1
fi
dpo=$(ckpt "$work/dpo")

models=(sft dpo)
if (( OWN_STEPS > 0 )); then
  # The SFT model answers the preference training prompts greedily; each wrong
  # answer becomes the rejected one of a pair whose chosen answer is the correct one.
  # The held-out pairs stay the validation split.
  stamp "5. DPO on the SFT model's own mistakes, $OWN_STEPS steps (beta $BETA, dpo_nll $DPO_NLL, lr $DPO_LR)"
  if ! have "$work/own-data"; then
    rt generate --checkpoint "$sft" --prompts "$work/pref-data/synthetic/train.jsonl" --columns messages=chosen \
      --max-tokens 32 --batch 16 --out "$work/own-answers.jsonl" | tail -1
    python3 - "$work/own-answers.jsonl" "$work/own-pairs.jsonl" <<'PY'
import json, sys
n = 0
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r["exact_match"] or not r["completion"].strip():
            continue
        # The prompt as a message list, so the pair is rendered with the chat template
        # the SFT model learned (a string prompt would be a raw, untemplated pair).
        prompt = r["chosen"][:1]
        out.write(json.dumps({"prompt": prompt, "chosen": r["chosen"][1]["content"], "rejected": r["completion"]}) + "\n")
        n += 1
print(f"  {n} pairs of a correct answer and the SFT model's own wrong one")
PY
    rt prepare --format preference --input "$work/own-pairs.jsonl" --val-input "$held" \
      --tokenizer byte --seq 64 --out "$work/own-data" --overwrite | sed -n 1p
  fi
  if ! have "$work/dpo-own"; then
    fit "$work/dpo-own" --objective dpo --beta "$BETA" --dpo-nll "$DPO_NLL" --data "$work/own-data" --init-from "$sft" \
      --seq 64 --batch 16 --steps "$OWN_STEPS" --lr "$DPO_LR" --min-lr "$min_lr" --warmup 20 --log-interval 100 \
      --eval-batches 10 --tensorboard=false | tail -1
  fi
  dpo_own=$(ckpt "$work/dpo-own")
  models+=(dpo_own)
fi

stamp "6. held-out pairs"
rt eval --checkpoint "$rm" --data "$work/pref-data" | tee "$work/eval-rm.txt"
rt eval --checkpoint "$sft" --data "$work/pref-data" --objective dpo | tee "$work/eval-sft.txt"
rt eval --checkpoint "$dpo" --data "$work/pref-data" | tee "$work/eval-dpo.txt"
if [[ -n "${dpo_own:-}" ]]; then
  rt eval --checkpoint "$dpo_own" --data "$work/pref-data" | tee "$work/eval-dpo_own.txt"
fi

# The held-out pairs' prompts, answered greedily, against their chosen (correct)
# answers. The pairs are held out of the reward and DPO training, the SFT rows come
# from another seed; how many held-out prompts a training set also holds (the
# tasks' vocabulary is small) is printed.
stamp "7. exact match on the $(wc -l < "$held") held-out pairs' prompts"
python3 - "$held" "$work/sft-data/synthetic/train.jsonl" "$work/pref-data/synthetic/train.jsonl" <<'PY'
import json, sys
def prompt(row):
    r = json.loads(row)
    return r["chosen"][0]["content"] if "chosen" in r else (r.get("prompt") or r["messages"][0]["content"])
held = [prompt(l) for l in open(sys.argv[1])]
for name, path in (("SFT", sys.argv[2]), ("preference", sys.argv[3])):
    seen = {prompt(l) for l in open(path)}
    print(f"  {sum(p in seen for p in held)} of the {len(held)} held-out prompts are also {name} training prompts")
PY
for m in "${models[@]}"; do
  rt eval --checkpoint "${!m}" --exact-match "$held" --columns messages=chosen --json | tee "$work/em-$m.json"
done
acc() { sed -n 's/.*accuracy \([0-9.]*\),.*/\1/p' "$1" | head -1; }
pol() { sed -n 's/^policy accuracy.*: \([0-9.]*\)$/\1/p' "$1"; }
em() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.4f (%d of %d)" % (r["exact_match"], r["correct"], r["examples"]))' "$1"; }
echo
echo "| model | held-out pair accuracy | held-out exact match |"
echo "|---|---|---|"
echo "| reward model (r_chosen > r_rejected) | $(acc "$work/eval-rm.txt") | |"
echo "| SFT policy (logp_chosen > logp_rejected) | $(pol "$work/eval-sft.txt") | $(em "$work/em-sft.json") |"
echo "| DPO policy (logp_chosen > logp_rejected) | $(pol "$work/eval-dpo.txt") | $(em "$work/em-dpo.json") |"
echo "| DPO implicit reward (beta*(pi-ref), chosen > rejected) | $(acc "$work/eval-dpo.txt") | |"
if [[ -n "${dpo_own:-}" ]]; then
  echo "| DPO on own mistakes, policy (logp_chosen > logp_rejected) | $(pol "$work/eval-dpo_own.txt") | $(em "$work/em-dpo_own.json") |"
fi
stamp "done"
