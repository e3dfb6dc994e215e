#!/usr/bin/env bash
# Fine-tuning demonstration: pre-train a small GPT on tiny shakespeare, prepare two
# synthetic instruction tasks, fine-tune from the pre-trained checkpoint, and score
# exact match on held-out prompts for the base and the tuned model. Then the same
# fine-tuning runs on a local cluster of 1 and of 3 workers (3 fixed streams) for a
# hundred steps, and their final losses are compared.
#
#   scripts/sft/demo.sh [WORKDIR]        (default: a fresh temporary directory)
#
# Environment: RINGTRAIN (binary; built from this checkout when unset), CORPUS (text
# to pre-train on; /work/shared/data/tinyshakespeare.txt, else the corpus shipped in
# the binary), PRETRAIN_STEPS, SFT_EPOCHS, TASKS (default upper,reverse).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/ringtrain-sft-demo.XXXXXX)}
mkdir -p "$work"
if [[ -z "${RINGTRAIN:-}" ]]; then
  (cd "$here" && GOTOOLCHAIN=local go build -o "$work/ringtrain" ./cmd/ringtrain)
  RINGTRAIN=$work/ringtrain
fi
rt() { "$RINGTRAIN" --log-level warn "$@"; }
CORPUS=${CORPUS:-/work/shared/data/tinyshakespeare.txt}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-600}
SFT_EPOCHS=${SFT_EPOCHS:-3}
TASKS=${TASKS:-upper,reverse}
model=(--layers 4 --heads 4 --embd 128 --seq 64 --batch 16)
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "1. pre-training data: $CORPUS (byte tokenizer)"
if [[ -f $CORPUS ]]; then
  rt prepare --input "$CORPUS" --tokenizer byte --out "$work/pretrain-data" --if-missing
else
  rt prepare --shipped --tokenizer byte --out "$work/pretrain-data" --if-missing
fi

stamp "2. pre-training for $PRETRAIN_STEPS steps"
rt train --data "$work/pretrain-data" --out "$work/pretrain" "${model[@]}" --steps "$PRETRAIN_STEPS" \
  --lr 2e-3 --warmup 50 --log-interval 100 --eval-interval 0 --eval-batches 10 --tensorboard=false | tail -2
base=$(ls -d "$work"/pretrain/ckpt/step-* | tail -1)

stamp "3. instruction data: synthetic $TASKS, the pre-training tokenizer"
rt prepare --synthetic "$TASKS" --synthetic-examples 4000 --synthetic-val 200 \
  --tokenizer "$work/pretrain-data/tokenizer.json" --seq 64 --out "$work/sft-data" --overwrite

stamp "4. fine-tuning from $base for $SFT_EPOCHS epochs"
rt train --objective sft --data "$work/sft-data" --init-from "$base" --out "$work/sft" \
  --seq 64 --batch 16 --epochs "$SFT_EPOCHS" --lr 1e-3 --warmup 20 --log-interval 200 \
  --eval-interval 500 --eval-batches 20 --tensorboard=false | grep -v '^step .*loss [0-9.]*  lr' || true
tuned=$(ls -d "$work"/sft/ckpt/step-* | tail -1)

stamp "5. exact match on held-out prompts, per task"
IFS=, read -ra tasks <<< "$TASKS"
for t in "${tasks[@]}"; do
  case $t in
    arith) key='"What is ' ;; reverse) key='"Reverse: ' ;; sort) key='"Sort: ' ;; upper) key='"Uppercase: ' ;;
  esac
  grep -F "$key" "$work/sft-data/synthetic/val.jsonl" > "$work/val-$t.jsonl"
  echo "task $t:"
  echo -n "  base:  "; rt eval --checkpoint "$base" --exact-match "$work/val-$t.jsonl" --template plain --json
  echo -n "  tuned: "; rt eval --checkpoint "$tuned" --exact-match "$work/val-$t.jsonl" --json
done

stamp "6. the same fine-tuning on a local cluster of 1 and of 3 workers (3 streams, 100 steps)"
for w in 1 3; do
  rt local --workers "$w" --streams 3 --objective sft --data "$work/sft-data" --init-from "$base" \
    --out "$work/sft-w$w" --dir "$work/cluster-w$w" --seq 64 --batch 15 --steps 100 --lr 1e-3 --warmup 5 \
    --eval-interval 0 --eval-batches 0 --checkpoint-interval 0 --sample-tokens 0 --tensorboard=false > "$work/local-w$w.log" 2>&1
  tail -1 "$work/sft-w$w/metrics.jsonl" | sed "s/^/  workers=$w: /" | cut -c1-120
done
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
last = lambda p: [json.loads(l) for l in open(p) if '"loss"' in l][-1]
a, b = last(f"{w}/sft-w1/metrics.jsonl"), last(f"{w}/sft-w3/metrics.jsonl")
d = abs(a["loss"] - b["loss"])
print(f"  final loss, 1 worker {a['loss']:.7f}, 3 workers {b['loss']:.7f}: difference {d:.2e} ({'within' if d <= 1e-5 else 'OUTSIDE'} 1e-5)")
PY
stamp "done; everything is in $work"
