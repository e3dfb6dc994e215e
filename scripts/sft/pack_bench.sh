#!/usr/bin/env bash
# pack_bench.sh [WORKDIR] [SEQ] [STEPS]: tokens/s of useful tokens with and without
# packing, on the same synthetic SFT examples and the same model, in one session.
#
# It prepares the synthetic tasks upper, reverse, arith and sort (2000 train examples
# each) twice, one example a row and packed (--pack), then trains the same 4-layer,
# 128-wide GPT (batch 16) from the same seed for STEPS steps on each, twice in
# alternation. A step's time is the mean over steps 5..STEPS-1 of metrics.jsonl (the
# first steps and the final evaluation left out). Useful tokens are the examples' own
# tokens (prompt, answer and its end-of-text; not padding): both datasets hold the
# same examples, so a row carries (the examples' tokens) / (train rows) of them on
# average. Useful tokens/s = rows/s x useful tokens a row. On a machine shared with
# other work the wall clock is noisy; the process CPU time per step (user + system over
# the whole run, its start and final evaluation included) is printed beside it.
set -euo pipefail
W=${1:-$(mktemp -d)}
SEQ=${2:-128}
STEPS=${3:-120}
RT=${RINGTRAIN:-ringtrain}
mkdir -p "$W"
for kind in plain packed; do
	flag=""
	[ "$kind" = packed ] && flag="--pack"
	"$RT" prepare --synthetic upper,reverse,arith,sort --synthetic-examples 2000 --synthetic-val 100 \
		--tokenizer byte --seq "$SEQ" --out "$W/data-$kind" --overwrite $flag >"$W/prepare-$kind.txt" 2>&1
	grep '^prepared' "$W/prepare-$kind.txt"
done
for round in 1 2; do
	for kind in plain packed; do
		rm -rf "$W/run-$kind-$round"
		/usr/bin/time -f "%U %S" -o "$W/cpu-$kind-$round" "$RT" train --objective sft --data "$W/data-$kind" --seq "$SEQ" --layers 4 --heads 4 --embd 128 \
			--context "$SEQ" --batch 16 --steps "$STEPS" --eval-interval 0 --eval-batches 1 --seed 7 \
			--out "$W/run-$kind-$round" >/dev/null 2>&1
	done
done
python3 - "$W" "$SEQ" "$STEPS" <<'PY'
import json, os, sys
W, T, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
L = T + 1

def train_stats(kind):
    m = json.load(open(os.path.join(W, "data-" + kind, "manifest.json")))
    rows, useful = 0, 0
    for s in m["train_shards"]:
        mask = open(os.path.join(W, "data-" + kind, s["mask"]["file"]), "rb").read()
        for r in range(len(mask) // L):
            rows += 1
            if kind == "plain":  # the example ends at its last trained token (its end-of-text)
                row = mask[r * L:(r + 1) * L]
                useful += max(i for i, b in enumerate(row) if b) + 1
    return rows, useful

plain_rows, useful = train_stats("plain")
packed_rows, _ = train_stats("packed")
print(f"seq {T}: {plain_rows} train examples, {useful} useful tokens ({useful / plain_rows:.1f} an example); "
      f"packed into {packed_rows} rows ({plain_rows / packed_rows:.2f} examples a row)")
per_row = {"plain": useful / plain_rows, "packed": useful / packed_rows}
for rnd in (1, 2):
    for kind in ("plain", "packed"):
        recs = [json.loads(l) for l in open(os.path.join(W, f"run-{kind}-{rnd}", "metrics.jsonl"))]
        e = {r["step"]: r["elapsed_s"] for r in recs}
        step_s = (e[steps - 1] - e[5]) / (steps - 1 - 5)
        rows_s = 16 / step_s
        u, s = map(float, open(os.path.join(W, f"cpu-{kind}-{rnd}")).read().split()[-2:])
        cpu_step = (u + s) / steps
        print(f"round {rnd} {kind:6s}: {step_s * 1000:7.1f} ms/step, {16 * T / step_s:8.0f} positions/s, "
              f"{rows_s * per_row[kind]:8.0f} useful tokens/s ({per_row[kind]:.1f} useful of {T} positions a row); "
              f"CPU {cpu_step * 1000:7.1f} ms/step, {16 * per_row[kind] / cpu_step:8.0f} useful tokens per CPU-second")
PY
