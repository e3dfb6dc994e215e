#!/usr/bin/env python3
"""OpenBLAS sgemm speed on the shapes `ringtrain bench gemm` measures.

Runs torch.mm (Debian's torch calls OpenBLAS's sgemm) with preallocated outputs, or
numpy.matmul with --numpy, on the same list of shapes as `ringtrain bench gemm` and
prints GFLOP/s in the same columns:

    /usr/bin/python3 scripts/bench/openblas_gemm.py --threads 2
    /usr/bin/python3 scripts/bench/openblas_gemm.py --threads 2 --sets square --time 1

Shapes: for each model, N = batch*seq rows and each linear layer (in, out) of a GPT-2
block plus the tied LM head gives three products: fwd (NT: m=N, n=out, k=in),
dinp (NN: m=N, n=in, k=out) and dw (TN: m=out, n=in, k=N). "tiny" is the tiny recipe
(4 layers, C=128, T=64, batch 12, vocab 67), "nanogpt" nanoGPT's shakespeare-char shape
(C=384, T=256, batch 8, vocab 65), "square" is NN square 256..2048.

Each shape is timed for --time seconds per repetition, --reps times; the best
repetition is printed (the machine may be shared, so the best is the least disturbed).

With --serve it prints one banner line, then reads lines "OP M N K SECONDS" on stdin and
answers each with the GFLOP/s of one timing: `ringtrain bench gemm --openblas` drives it
so that OpenBLAS is timed interleaved with the Go implementations.
"""

import argparse
import ctypes
import os
import sys
import time


def model_shapes(name, n_rows, c, vocab):
    out = []
    for lin, ic, oc in (("qkv", c, 3 * c), ("attnproj", c, c), ("fc", c, 4 * c),
                        ("fcproj", 4 * c, c), ("lmhead", c, vocab)):
        out.append(("%s.%s.fwd" % (name, lin), "NT", n_rows, oc, ic))
        out.append(("%s.%s.dinp" % (name, lin), "NN", n_rows, ic, oc))
        out.append(("%s.%s.dw" % (name, lin), "TN", oc, ic, n_rows))
    return out


SETS = {
    "tiny": lambda: model_shapes("tiny", 12 * 64, 128, 67),
    "nanogpt": lambda: model_shapes("nanogpt", 8 * 256, 384, 65),
    "square": lambda: [("square.%d" % s, "NN", s, s, s) for s in (256, 512, 1024, 2048)],
}


def openblas():
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib
    except OSError:
        return None


def make_run(use_numpy, op, m, n, k):
    """Returns a function that computes one product of shape (op, m, n, k)."""
    ta, tb = op[0] == "T", op[1] == "T"
    if use_numpy:
        import numpy as np
        rng = np.random.default_rng(1)
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        return lambda: np.matmul(opa, opb, out=c)
    import torch
    a = torch.randn((k, m) if ta else (m, k))
    b = torch.randn((n, k) if tb else (k, n))
    c = torch.empty((m, n))
    opa, opb = (a.t() if ta else a), (b.t() if tb else b)
    return lambda: torch.mm(opa, opb, out=c)


def time_run(run, flops, seconds):
    """Runs run for at least seconds and returns GFLOP/s."""
    t0 = time.perf_counter()
    it = 0
    while True:
        run()
        it += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return flops * it / el / 1e9


def main():
    ap = argparse.ArgumentParser(description="OpenBLAS sgemm GFLOP/s on ringtrain's shapes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", default="tiny,nanogpt,square", help="comma-separated: tiny, nanogpt, square")
    ap.add_argument("--time", type=float, default=0.3, help="seconds per repetition")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--numpy", action="store_true", help="numpy.matmul instead of torch.mm")
    ap.add_argument("--serve", action="store_true", help="answer shapes from stdin (see above)")
    args = ap.parse_args()

    lib = openblas()
    if lib is not None:
        lib.openblas_set_num_threads(args.threads)
    if args.numpy:
        import numpy as np
        backend = "numpy %s" % np.__version__
    else:
        import torch
        torch.set_num_threads(args.threads)
        backend = "torch %s (threads %d)" % (torch.__version__, torch.get_num_threads())
    core = lib.openblas_get_corename().decode() if lib is not None else "unknown"
    nthr = lib.openblas_get_num_threads() if lib is not None else -1
    print("%s, OpenBLAS core %s, OpenBLAS threads %d" % (backend, core, nthr), flush=True)
    if args.serve:
        cache = {}
        for line in sys.stdin:
            f = line.split()
            if len(f) != 5:
                sys.exit("--serve: bad request %r" % line)
            key = (f[0], int(f[1]), int(f[2]), int(f[3]))
            if key not in cache:
                cache.clear()  # one shape at a time keeps memory low
                cache[key] = make_run(args.numpy, *key)
                cache[key]()
            print("%.3f" % time_run(cache[key], 2.0 * key[1] * key[2] * key[3], float(f[4])), flush=True)
        return 0

    print("%-24s %-3s %6s %6s %6s %10s" % ("shape", "op", "m", "n", "k", "GFLOP/s"))
    shapes = []
    for s in args.sets.split(","):
        if s not in SETS:
            sys.exit("unknown set %r (have %s)" % (s, ", ".join(SETS)))
        shapes += SETS[s]()
    for name, op, m, n, k in shapes:
        run = make_run(args.numpy, op, m, n, k)
        run()
        best = max(time_run(run, 2.0 * m * n * k, args.time) for _ in range(args.reps))
        print("%-24s %-3s %6d %6d %6d %10.1f" % (name, op, m, n, k, best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
