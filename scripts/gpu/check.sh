#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU, from the repository root, as
#
#     scripts/gpu/check.sh LOGDIR
#
# It takes under 7 minutes on an H100/H200 and writes one log per step to LOGDIR,
# with a summary (LOGDIR/summary.txt) of what passed and what failed; it exits non-zero
# when any step fails, naming it. Steps:
#
#   1. library discovery: where libcuda and libcublas were found (or everywhere looked)
#   2. every op against the CPU backend on random shapes, outputs poisoned with NaN
#   3. the model's golden tests on the cuda backend
#   4. 300 training steps of the tiny recipe with two 64-wide heads (GPT-2's head size,
#      which attention's fastest kernels take) on cuda and on cpu: the loss curves
#   5. a cluster of a coordinator and two workers on the GPU (--backend cuda), each
#      with an audit log, checked by `ringtrain audit`
#   6. GPT-2 124M (T=1024, B=16) training throughput: ringtrain bench train --backend
#      cuda next to scripts/bench/torch_train.py --device cuda (skipped without PyTorch
#      with CUDA), the time of each op in a profiled step, then ringtrain's throughput
#      again with TF32 matrix products
#
# With Go on the machine it builds what it runs; otherwise it uses the binaries that
# scripts/gpu/build.sh made on another machine (GPU_BIN, default .cache/gpu). The whole
# check keeps within CHECK_BUDGET seconds (default 420): each step's time limit is cut
# to what is left, and a step with no time left fails as skipped.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
log=${1:?usage: scripts/gpu/check.sh LOGDIR}
mkdir -p "$log"
log=$(cd "$log" && pwd)
bin=${GPU_BIN:-$root/.cache/gpu}
summary=$log/summary.txt
: >"$summary"
failed=0
budget=${CHECK_BUDGET:-420}

note() { echo "$*" | tee -a "$summary"; }
# step NAME TIMEOUT CMD...: runs CMD with a time limit, its output in LOGDIR/NAME.log.
step() {
	local name=$1 limit=$2
	shift 2
	local left=$((budget - SECONDS))
	if [ $left -lt 15 ]; then
		note "FAIL $name (skipped: the check's budget of $budget s is spent)"
		failed=1
		return
	fi
	[ $left -lt $limit ] && limit=$left
	local start=$SECONDS
	if timeout "$limit" "$@" >"$log/$name.log" 2>&1; then
		if grep -q -- '--- SKIP' "$log/$name.log"; then
			# A GPU test that skips did not check anything: on this machine that is a failure.
			note "FAIL $name (skipped: $(grep -A1 -- '--- SKIP' "$log/$name.log" | grep -v -- '--- SKIP' | head -1 | sed 's/^ *//' | cut -c1-200))"
			failed=1
			return
		fi
		note "PASS $name ($((SECONDS - start)) s)"
	else
		local rc=$?
		[ $rc = 124 ] && echo "timed out after $limit" >>"$log/$name.log"
		note "FAIL $name (exit $rc, $((SECONDS - start)) s): $(grep -E 'FAIL|Error|error|panic|unavailable|not found' "$log/$name.log" | head -3 | tr '\n' ' ')"
		failed=1
	fi
}

nvidia-smi >"$log/nvidia-smi.log" 2>&1 || note "note: nvidia-smi not found or failed (see nvidia-smi.log)"
{
	echo "## the loader's CUDA libraries"
	ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas' || echo "(none in the ld.so cache)"
	echo "## python3"
	command -v python3 && python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
} >"$log/machine.log" 2>&1
grep -m1 'Driver Version' "$log/nvidia-smi.log" | tee -a "$summary"

if command -v go >/dev/null 2>&1; then
	step build 240 scripts/gpu/build.sh "$bin"
fi
for f in ringtrain cuda.test model.test; do
	if [ ! -x "$bin/$f" ]; then
		note "FAIL setup: $bin/$f missing: install Go or run scripts/gpu/build.sh on another machine and copy .cache/gpu"
		exit 1
	fi
done
rt=$bin/ringtrain

# 1. Library discovery.
step discovery 60 bash -c "cd tensor/cuda && '$bin/cuda.test' -test.run '^TestDiscover$' -test.v"
grep -E 'driver|cublas|looked' "$log/discovery.log" | head -12 | tee -a "$summary"

# 2. Ops against the CPU.
step ops 120 bash -c "cd tensor/cuda && '$bin/cuda.test' -test.run '^(TestKernelResources|TestOpsMatchCPU)$' -test.v"
grep -E 'of the largest\)' "$log/ops.log" | sed -E 's/^ *ops_test.go:[0-9]+: ([^:]+):.*\(([^ ]+) of the largest\)/\2 \1/' |
	sort -g | tail -1 | sed 's/^/ops: the largest error relative to its output'"'"'s largest value: /' | tee -a "$summary"
grep -E 'registers' "$log/ops.log" | grep attention | sed 's/^ *ops_test.go:[0-9]*: /kernel /' | tee -a "$summary"

# 3. Golden tests on cuda.
step golden 120 bash -c "cd model && '$bin/model.test' -test.run 'Golden' -test.v"
grep -E -- '--- (PASS|FAIL|SKIP): TestGolden.*/cuda' "$log/golden.log" | tee -a "$summary"

# 4. Loss curves: 300 steps of the tiny recipe on each backend.
for be in cpu cuda; do
	rm -rf "$log/curve-$be"
	step "curve-$be" 150 "$rt" local --workers 1 --backend "$be" --heads 2 --steps 300 --log-interval 50 \
		--eval-interval 0 --checkpoint-interval 300 --sample-tokens 0 --tensorboard=false --dir "$log/curve-$be"
done
python3 - "$log" <<'PY' 2>&1 | tee -a "$summary"
import json, sys
log = sys.argv[1]
curves = {}
for be in ("cpu", "cuda"):
    try:
        rows = [json.loads(l) for l in open(f"{log}/curve-{be}/run/metrics.jsonl")]
        curves[be] = {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}
    except OSError as e:
        print(f"FAIL curve: no metrics for {be}: {e}")
        sys.exit(0)
steps = sorted(set(curves["cpu"]) & set(curves["cuda"]))
for s in steps:
    if s % 50 == 0 or s == steps[-1]:
        print(f"curve step {s:4d}  cpu {curves['cpu'][s]:.4f}  cuda {curves['cuda'][s]:.4f}")
last = steps[-1] if steps else None
if last is None or abs(curves["cpu"][last] - curves["cuda"][last]) > 0.05:
    print("FAIL curve: the final losses differ by more than 0.05")
else:
    print("PASS curve: final losses within 0.05")
PY
grep -q "FAIL curve" "$summary" && failed=1

# 5. Coordinator and two cuda workers with audit logs.
cluster() {
	set -e
	local d=$log/cluster
	rm -rf "$d" && mkdir -p "$d/audit"
	"$rt" train --data "$log/curve-cpu/data" --out "$d/run" --steps 60 --streams 2 --batch 12 --heads 2 \
		--checkpoint-interval 30 --eval-interval 0 --print-config >"$d/job.yaml"
	"$rt" coordinator --id c0 --data-dir "$d/c0" --raft-addr 127.0.0.1:17000 --grpc-addr 127.0.0.1:17001 \
		--peers c0=127.0.0.1:17000 >"$d/c0.log" 2>&1 &
	local pids=$!
	for w in 0 1; do
		"$rt" worker --id "w$w" --coordinators 127.0.0.1:17001 --listen "127.0.0.1:1710$w" \
			--backend cuda --audit-log "$d/audit/w$w.jsonl" >"$d/w$w.log" 2>&1 &
		pids="$pids $!"
	done
	trap "kill $pids 2>/dev/null" EXIT
	"$rt" submit "$d/job.yaml" --coordinators 127.0.0.1:17001 --min-workers 2
	# The workers report their backend's device; status shows it while they train.
	for _ in $(seq 60); do
		for p in ${pids#* }; do kill -0 "$p" 2>/dev/null || break 2; done # a worker that failed to start
		"$rt" status --coordinators 127.0.0.1:17001 --json >"$d/status.json" 2>/dev/null || true
		[ "$(grep -o '"device": *"cuda[^"]*"' "$d/status.json" | wc -l)" = 2 ] && break
		sleep 0.5
	done
	grep -o '"device": *"[^"]*"' "$d/status.json"
	wait ${pids#* } # the workers exit 0 when the job has finished
	"$rt" audit --streams 2 "$d"/audit/*.jsonl
}
step cluster 150 bash -c "$(declare -f cluster); log='$log' rt='$rt' cluster"

# 6. GPT-2 124M throughput.
gpt2="--layers 12 --heads 12 --embd 768 --vocab 50257 --seq 1024 --batch 16"
step bench-ringtrain 120 "$rt" bench train --backend cuda $gpt2 --warmup 2 --steps 8 --peak-time 500ms
grep -E 'tokens/s|device|of a step|MFU' "$log/bench-ringtrain.log" | tee -a "$summary"
if python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
	step bench-torch 120 python3 scripts/bench/torch_train.py --device cuda $gpt2 --warmup 3 --steps 11
	grep -E 'tokens/s' "$log/bench-torch.log" | sed 's/^/torch: /' | tee -a "$summary"
else
	note "SKIP bench-torch: no PyTorch with CUDA here"
fi

# Where a step's time goes: every op timed (each waited for, so the step is slower).
step bench-profile 90 env RINGTRAIN_CUDA_PROFILE=1 "$rt" bench train --backend cuda $gpt2 --warmup 1 --steps 2 --peak-time 100ms
sed -n '/time per step of each op/,$p' "$log/bench-profile.log" | head -16 | tee -a "$summary"

step bench-ringtrain-tf32 120 env RINGTRAIN_CUDA_TF32=1 "$rt" bench train --backend cuda $gpt2 --warmup 2 --steps 8 --peak-time 500ms
grep -E 'tokens/s|MFU' "$log/bench-ringtrain-tf32.log" | sed 's/^/tf32: /' | tee -a "$summary"

if [ $failed = 0 ]; then note "gpu check: all steps passed"; else note "gpu check: some steps failed (see above and the logs in $log)"; fi
exit $failed
