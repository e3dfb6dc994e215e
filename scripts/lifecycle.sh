#!/usr/bin/env bash
# The model lifecycle of README.md ("The lifecycle in five minutes"), command for
# command: pre-train on the shipped corpus, instruction-tune, train a reward model,
# tune with PPO against it, tune with DPO, chat. cmd/ringtrain's TestReadmeLifecycle checks that the README's
# commands and this script's are the same and that their flags exist.
#
#   scripts/lifecycle.sh [WORKDIR]        (default: a fresh temporary directory)
#
# The commands write under WORKDIR/life. Environment: RINGTRAIN (binary; built from
# this checkout when unset).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/ringtrain-lifecycle.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [[ -z "${RINGTRAIN:-}" ]]; then
  (cd "$here" && GOTOOLCHAIN=local go build -o "$work/ringtrain" ./cmd/ringtrain)
  RINGTRAIN=$work/ringtrain
fi
ringtrain() { "$RINGTRAIN" --log-level warn "$@"; }
cd "$work"
rm -rf life
start=$(date +%s)
stamp() { echo; echo "[$(( $(date +%s) - start ))s] $*"; }

stamp "1. pre-train on the shipped corpus"
ringtrain prepare --shipped --tokenizer byte --out life/text
ringtrain train --data life/text --out life/base --layers 4 --heads 4 --embd 128 --seq 64 --batch 16 --steps 600 --lr 2e-3 --tensorboard=false

stamp "2. instruction-tune (SFT)"
ringtrain prepare --synthetic reverse,sort --tokenizer life/text/tokenizer.json --seq 64 --out life/sft-data
ringtrain train --objective sft --data life/sft-data --init-from life/base/ckpt/step-000600 --seq 64 --batch 16 --steps 800 --lr 1e-3 --out life/sft --tensorboard=false
ringtrain eval --checkpoint life/sft/ckpt/step-000800 --exact-match life/sft-data/synthetic/val.jsonl --limit 100

stamp "3. reward model"
ringtrain prepare --format preference --synthetic reverse,sort --seed 2 --tokenizer life/text/tokenizer.json --seq 64 --out life/pref-data
ringtrain train --objective reward --data life/pref-data --init-from life/sft/ckpt/step-000800 --seq 64 --batch 16 --steps 400 --lr 5e-4 --out life/rm --tensorboard=false
ringtrain eval --checkpoint life/rm/ckpt/step-000400 --data life/pref-data

stamp "4. PPO"
ringtrain train --objective ppo --prompts life/sft-data --init-from life/sft/ckpt/step-000800 --reward-model life/rm/ckpt/step-000400 --seq 64 --batch 16 --steps 20 --lr 1e-5 --min-lr 1e-5 --warmup 0 --beta 0.1 --target-kl 2 --kl-horizon 64 --max-new-tokens 12 --out life/ppo --tensorboard=false
ringtrain eval --checkpoint life/ppo/ckpt/step-000020 --exact-match life/sft-data/synthetic/val.jsonl --limit 100

stamp "5. DPO"
ringtrain train --objective dpo --beta 1 --data life/pref-data --init-from life/sft/ckpt/step-000800 --seq 64 --batch 16 --steps 200 --lr 5e-5 --min-lr 5e-6 --warmup 20 --out life/dpo --tensorboard=false
ringtrain eval --checkpoint life/dpo/ckpt/step-000200 --data life/pref-data
ringtrain eval --checkpoint life/dpo/ckpt/step-000200 --exact-match life/sft-data/synthetic/val.jsonl --limit 100

stamp "6. chat (here fed two prompts; in a terminal it is interactive)"
printf 'Reverse: owl sea hat\n/reset\nSort: yew elk fog\n' | ringtrain chat --checkpoint life/dpo/ckpt/step-000200

stamp "done in $work/life"
