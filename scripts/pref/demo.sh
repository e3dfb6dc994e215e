#!/usr/bin/env bash
# Preference-learning demonstration on synthetic tasks with known ground truth.
#
#  1. Data: instruction rows of the tasks, and preference pairs whose chosen answer is
#     the correct one and whose rejected answer is corrupted (two words swapped,
#     letters of a word changed, a word too many or too few: see docs/preferences.md).
#  2. SFT from scratch on the instruction rows, a checkpoint every 200 steps. The
#     checkpoint at step SFT_START (room left to improve) is the policy the DPO runs
#     start from and their reference; the last one, which copies better, is the
#     reward model's start.
#  3. A reward model (Bradley-Terry) on the preference pairs.
#  4. The start policy answers the preference pairs' training prompts greedily; each
#     wrong answer becomes the rejected answer of a pair whose chosen answer is the
#     correct one ("own mistakes"). Three runs from the start policy on those pairs,
#     the same steps and learning rate:
#       - DPO;
#       - DPO with an NLL term on the chosen answers (--dpo-nll DPO_NLL);
#       - the control: SFT on the same chosen answers alone.
#  5. On the held-out pairs: the reward model's accuracy, each policy's own ranking
#     (is the chosen answer the more likely one?), and the exact match of each
#     policy's greedy answers to the pairs' prompts (the chosen answers are correct).
#
#   scripts/pref/demo.sh [WORKDIR]        (default: a fresh temporary directory)
#
# Environment: RINGTRAIN (binary; built from this checkout when unset), TASKS
# (default reverse,sort), PREF_EXAMPLES (preference pairs per task, default 9000),
# VAL (held-out pairs drawn per task before those whose prompt the training pairs
# hold are left out; default 700), SFT_STEPS, SFT_START, RM_STEPS, DPO_STEPS, BETA,
# DPO_LR, DPO_NLL, WORKERS (default 1: 'ringtrain train', one process; N > 1: the
# reward, DPO and control runs on an in-process cluster of N workers, 'ringtrain
# local'), REUSE=1 (keep the stages whose outputs WORKDIR already holds; delete a
# stage's directory to rerun it). Needs python3 (to turn generated answers into
# pairs).
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
PREF_EXAMPLES=${PREF_EXAMPLES:-9000}
VAL=${VAL:-700}
SFT_STEPS=${SFT_STEPS:-1600}
SFT_START=${SFT_START:-400}
RM_STEPS=${RM_STEPS:-4000}
DPO_STEPS=${DPO_STEPS:-200}
BETA=${BETA:-0.1}
DPO_LR=${DPO_LR:-5e-5}
DPO_NLL=${DPO_NLL:-5}
WORKERS=${WORKERS:-1}
REUSE=${REUSE:-0}
# have DIR: REUSE is set and DIR exists (a data set, pairs file or run to keep).
have() { [[ "$REUSE" == 1 && -e "$1" ]]; }
ckpt() { ls -d "$1"/ckpt/step-* | tail -1; }
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
min_lr=$(python3 -c "print($DPO_LR / 10)")
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "1. data: synthetic $TASKS, instruction rows and preference pairs (byte tokenizer)"
if ! have "$work/sft-data"; then
  rt prepare --synthetic "$TASKS" --synthetic-examples 3000 --synthetic-val 200 \
    --tokenizer byte --seq 64 --out "$work/sft-data" --overwrite
fi
if ! have "$work/pref-data"; then
  rt prepare --format preference --synthetic "$TASKS" --synthetic-examples "$PREF_EXAMPLES" --synthetic-val "$VAL" --seed 2024 \
    --tokenizer byte --seq 64 --out "$work/pref-data" --overwrite
fi
held=$work/pref-data/synthetic/val.jsonl

stamp "2. SFT from scratch for $SFT_STEPS steps"
if ! have "$work/sft"; then
  rt train --objective sft --data "$work/sft-data" --out "$work/sft" --layers 4 --heads 4 --embd 128 \
    --seq 64 --batch 16 --steps "$SFT_STEPS" --lr 2e-3 --warmup 30 --log-interval 500 \
    --checkpoint-interval 200 --eval-batches 10 --tensorboard=false | tail -1
fi
sft=$work/sft/ckpt/$(printf 'step-%06d' "$SFT_START")
sft_last=$(ckpt "$work/sft")

stamp "3. reward model from $sft_last for $RM_STEPS steps"
if ! have "$work/rm"; then
  fit "$work/rm" --objective reward --data "$work/pref-data" --init-from "$sft_last" \
    --seq 64 --batch 16 --steps "$RM_STEPS" --lr 5e-4 --warmup 30 --log-interval 1000 \
    --eval-batches 10 --tensorboard=false | tail -1
fi
rm=$(ckpt "$work/rm")

stamp "4. the pairs of $sft's own mistakes on the preference training prompts"
if ! have "$work/own-data"; then
  rt generate --checkpoint "$sft" --prompts "$work/pref-data/synthetic/train.jsonl" --columns messages=chosen \
    --max-tokens 32 --batch 64 --out "$work/own-answers.jsonl" | tail -1
  python3 - "$work/own-answers.jsonl" "$work/own-pairs.jsonl" "$work/own-chosen.jsonl" <<'PY'
import json, sys
n = 0
with open(sys.argv[2], "w") as pairs, open(sys.argv[3], "w") as chosen:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r["exact_match"] or not r["completion"].strip():
            continue
        # The prompt as a message list, so the pair is rendered with the chat template
        # the SFT model learned (a string prompt would be a raw, untemplated pair).
        prompt, answer = r["chosen"][:1], r["chosen"][1]["content"]
        pairs.write(json.dumps({"prompt": prompt, "chosen": answer, "rejected": r["completion"]}) + "\n")
        chosen.write(json.dumps({"messages": r["chosen"]}) + "\n")
        n += 1
print(f"  {n} pairs of a correct answer and the start policy's own wrong one")
PY
  rt prepare --format preference --input "$work/own-pairs.jsonl" --val-input "$held" \
    --tokenizer byte --seq 64 --out "$work/own-data" --overwrite | sed -n 1p
  rt prepare --format sft --input "$work/own-chosen.jsonl" --val-input "$work/sft-data/synthetic/val.jsonl" \
    --tokenizer byte --seq 64 --out "$work/own-sft-data" --overwrite | sed -n 1p
fi

tune=(--init-from "$sft" --seq 64 --batch 16 --steps "$DPO_STEPS" --lr "$DPO_LR" --min-lr "$min_lr"
  --warmup 20 --log-interval 1000 --eval-batches 10 --tensorboard=false)
stamp "5. from $sft on the own-mistake pairs, $DPO_STEPS steps each (lr $DPO_LR): DPO (beta $BETA), DPO + NLL $DPO_NLL, SFT on the chosen answers"
if ! have "$work/dpo"; then
  fit "$work/dpo" --objective dpo --beta "$BETA" --data "$work/own-data" "${tune[@]}" | tail -1
fi
if ! have "$work/dpo_nll"; then
  fit "$work/dpo_nll" --objective dpo --beta "$BETA" --dpo-nll "$DPO_NLL" --data "$work/own-data" "${tune[@]}" | tail -1
fi
if ! have "$work/control"; then
  fit "$work/control" --objective sft --data "$work/own-sft-data" "${tune[@]}" | tail -1
fi
dpo=$(ckpt "$work/dpo")
dpo_nll=$(ckpt "$work/dpo_nll")
control=$(ckpt "$work/control")
models=(sft dpo dpo_nll control)

stamp "6. held-out pairs"
rt eval --checkpoint "$rm" --data "$work/pref-data" | tee "$work/eval-rm.txt"
for m in "${models[@]}"; do
  rt eval --checkpoint "${!m}" --data "$work/pref-data" --objective dpo | tee "$work/eval-$m.txt"
done

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
echo "| SFT step $SFT_START, the start (logp_chosen > logp_rejected) | $(pol "$work/eval-sft.txt") | $(em "$work/em-sft.json") |"
echo "| DPO on own mistakes (logp_chosen > logp_rejected) | $(pol "$work/eval-dpo.txt") | $(em "$work/em-dpo.json") |"
echo "| DPO + NLL $DPO_NLL on own mistakes (logp_chosen > logp_rejected) | $(pol "$work/eval-dpo_nll.txt") | $(em "$work/em-dpo_nll.json") |"
echo "| control: SFT on the own-mistake pairs' chosen answers | $(pol "$work/eval-control.txt") | $(em "$work/em-control.json") |"
stamp "done"
