#!/usr/bin/env python3
"""PyTorch gloo all-reduce bandwidth on loopback: the reference for `ringtrain bench allreduce`.

Starts --world processes with torch.multiprocessing, joins them in a gloo process group
over tcp://127.0.0.1, and times dist.all_reduce (SUM) of float32 tensors of each --size.
Prints the same columns as `ringtrain bench allreduce` (nccl-tests style): the time per
all-reduce (the slowest rank's average), algbw = size/time and busbw = algbw * 2(W-1)/W,
in GB/s (1e9 bytes).

    /usr/bin/python3 scripts/bench/gloo_allreduce.py --world 2 --size 64MiB
    /usr/bin/python3 scripts/bench/gloo_allreduce.py --world 2 --size 1MiB,64MiB --iters 20 --json
"""

import argparse
import json
import os
import re
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

UNITS = {"": 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
         "G": 1 << 30, "GiB": 1 << 30, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def parse_sizes(text):
    sizes = []
    for field in text.split(","):
        m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", field)
        if not m or m.group(2) not in UNITS:
            raise SystemExit(f"--size {field!r}: want a byte count such as 4096, 512KiB or 64MiB")
        n = int(float(m.group(1)) * UNITS[m.group(2)])
        if n % 4:
            raise SystemExit(f"--size {field!r}: {n} bytes is not a whole number of float32s")
        sizes.append(n)
    return sizes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, args, port, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.world)
    results = []
    for size in args.sizes:
        x = torch.full((size // 4,), float(rank + 1), dtype=torch.float32)
        for i in range(args.warmup):
            dist.all_reduce(x)
            if i == 0:
                want = args.world * (args.world + 1) / 2
                if not torch.all(x == want):
                    raise SystemExit(f"rank {rank}: all-reduce gave {x[:4].tolist()}, want {want}")
        dist.barrier()
        began = time.perf_counter()
        for _ in range(args.iters):
            dist.all_reduce(x)
        per = torch.tensor([(time.perf_counter() - began) / args.iters], dtype=torch.float64)
        dist.all_reduce(per, op=dist.ReduceOp.MAX)  # the slowest rank's time counts
        results.append(per.item())
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        queue.put(results)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=int, default=2, help="number of ranks (processes)")
    ap.add_argument("--size", default="64MiB", help="message sizes in bytes, comma-separated")
    ap.add_argument("--iters", type=int, default=20, help="timed all-reduces per size")
    ap.add_argument("--warmup", type=int, default=3, help="untimed all-reduces per size (the first is checked)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    args.sizes = parse_sizes(args.size)
    if args.world < 1 or args.iters < 1 or args.warmup < 1:
        raise SystemExit("--world, --iters and --warmup must be at least 1")

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=rank_main, args=(r, args, port, queue)) for r in range(args.world)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=600)
        failed = [r for r, p in enumerate(procs) if p.exitcode != 0]
        if failed:
            raise SystemExit(f"ranks {failed} failed")
        times = queue.get()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()

    w = args.world
    rows = []
    for size, t in zip(args.sizes, times):
        alg = size / t / 1e9
        rows.append({"bytes": size, "count": size // 4, "time_us": t * 1e6, "algbw_gbps": alg,
                     "busbw_gbps": alg * 2 * (w - 1) / w})
    if args.json:
        json.dump({"world": w, "backend": "gloo", "torch": torch.__version__, "iters": args.iters,
                   "results": rows}, sys.stdout)
        print()
        return
    print(f"# PyTorch {torch.__version__} gloo all-reduce: {w} ranks as processes on 127.0.0.1")
    print(f"# {'size(B)':>12} {'count':>12} {'type':>6} {'iters':>6} {'time(us)':>12} {'algbw(GB/s)':>12} {'busbw(GB/s)':>12}")
    for r in rows:
        print(f"  {r['bytes']:12d} {r['count']:12d} {'float':>6} {args.iters:6d} {r['time_us']:12.1f} "
              f"{r['algbw_gbps']:12.3f} {r['busbw_gbps']:12.3f}")


if __name__ == "__main__":
    main()
