#!/usr/bin/env python3
"""PyTorch gloo all-reduce bandwidth on loopback: the reference for `ringtrain bench allreduce`.

Starts --world processes with torch.multiprocessing, joins them in a gloo process group
over tcp://127.0.0.1, and times dist.all_reduce (SUM) of float32 tensors of each --size.
Prints the same columns as `ringtrain bench allreduce` (nccl-tests style): the time per
all-reduce (the slowest rank's average), algbw = size/time and busbw = algbw * 2(W-1)/W,
in GB/s (1e9 bytes).

    /usr/bin/python3 scripts/bench/gloo_allreduce.py --world 2 --size 64MiB
    /usr/bin/python3 scripts/bench/gloo_allreduce.py --world 2 --size 1MiB,64MiB --iters 20 --json

With --netlab the ranks run in a network lab as `ringtrain bench allreduce --netlab` runs
its own (root and iproute2 needed): each rank in a network namespace of its own on a
bridge, its veth shaped with tc (a tbf for the rate at both ends, netem for delay, jitter
and loss on what the rank sends). `ringtrain bench allreduce --netlab ... --gloo THIS`
instead runs this script in its own lab, on the very links the ring used, passing
--netns and --addrs (the namespaces and addresses of ranks 0..W-1).

    sudo python3 scripts/bench/gloo_allreduce.py --world 4 --size 64MiB --netlab rate=1gbit
"""

import argparse
import ctypes
import json
import os
import random
import re
import socket
import subprocess
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


RATE_UNITS = {"gbit": 10**9, "mbit": 10**6, "kbit": 10**3, "bit": 1}


def parse_link(spec):
    """Parses a link spec as ringtrain's netlab does: rate=1gbit,delay=0.5ms,jitter=..,loss=..%."""
    link = {}
    for kv in filter(None, (f.strip() for f in spec.split(","))):
        k, _, v = kv.partition("=")
        if k == "rate":
            m = re.fullmatch(r"([0-9.]+)(gbit|mbit|kbit|bit)", v.lower())
            if not m:
                raise SystemExit(f"--netlab rate={v!r}: want a rate such as 100mbit or 1gbit")
            link["rate"] = int(float(m.group(1)) * RATE_UNITS[m.group(2)])
        elif k in ("delay", "jitter"):
            m = re.fullmatch(r"([0-9.]+)(us|ms|s)", v)
            if not m:
                raise SystemExit(f"--netlab {k}={v!r}: want a duration such as 500us or 0.5ms")
            link[k] = int(float(m.group(1)) * {"us": 1, "ms": 1000, "s": 10**6}[m.group(2)])
        elif k == "loss":
            link["loss"] = float(v.rstrip("%"))
        else:
            raise SystemExit(f"--netlab: unknown key {k!r}: want rate, delay, jitter or loss")
    return link


def sh(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")


def shape_cmds(dev, ns, link, send):
    """The tc commands of one end of a link, as netlab's shapeCmds: tbf for the rate, netem under it."""
    tc = ["tc"] + (["-n", ns] if ns else []) + ["qdisc", "replace", "dev", dev]
    cmds, parent = [], ["root"]
    if link.get("rate"):
        burst = max(128 << 10, link["rate"] // 8 // 250)
        cmds.append(tc + ["root", "handle", "1:", "tbf", "rate", f"{link['rate']}bit", "burst", str(burst), "latency", "20ms"])
        parent = ["parent", "1:1"]
    netem = []
    if send and link.get("delay"):
        netem += ["delay", f"{link['delay']}us"]
        if link.get("jitter"):
            netem += [f"{link['jitter']}us", "distribution", "normal"]
    if send and link.get("loss"):
        netem += ["loss", f"{link['loss']}%"]
    if netem:
        cmds.append(tc + parent + ["handle", "10:", "netem"] + netem + ["limit", "100000"])
    return cmds


class Lab:
    """W network namespaces on one bridge, each behind a veth shaped as link; close() removes them."""

    def __init__(self, world, link):
        self.tag = "gl%04x" % random.randrange(1 << 16)
        subnet = f"10.{200 + random.randrange(50)}.{random.randrange(256)}."
        self.bridge, self.ns, self.addrs, self.rule = self.tag + "b0", [], [], None
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            self.made_bridge = True
            sh("ip", "link", "set", self.bridge, "up")
            self.rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            sh("iptables", "-I", *self.rule)
            for r in range(world):
                ns, ip = f"{self.tag}-{r}", f"{subnet}{10 + r}"
                outer, inner = f"{self.tag}h{r}", f"{self.tag}c{r}"
                sh("ip", "netns", "add", ns)
                self.ns.append(ns)
                self.addrs.append(ip)
                for c in (["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns],
                          ["ip", "link", "set", outer, "master", self.bridge], ["ip", "link", "set", outer, "up"],
                          ["ip", "-n", ns, "addr", "add", ip + "/24", "dev", inner],
                          ["ip", "-n", ns, "link", "set", inner, "up"], ["ip", "-n", ns, "link", "set", "lo", "up"],
                          *shape_cmds(inner, ns, link, True), *shape_cmds(outer, None, link, False)):
                    sh(*c)
        except Exception:
            self.close()
            raise

    def close(self):
        for ns in self.ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if self.rule:
            subprocess.run(["iptables", "-D", *self.rule], capture_output=True)
        self.ns = []


def enter_netns(name):
    """Moves this process into network namespace name (ip netns's /run/netns/name) and
    points gloo at the namespace's interface."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)
    ifaces = [n for _, n in socket.if_nameindex() if n != "lo"]
    if ifaces:
        os.environ["GLOO_SOCKET_IFNAME"] = ifaces[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, args, port, queue):
    torch.set_num_threads(1)
    host = "127.0.0.1"
    if args.netns:
        enter_netns(args.netns[rank])
        host = args.addrs[0]
    dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank,
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
    ap.add_argument("--netlab", default="", help="run the ranks in a network lab with links shaped so: rate=1gbit,delay=0.5ms[,jitter=..,loss=..%%]")
    ap.add_argument("--netns", default="", help="run rank r in network namespace r of this comma-separated list (an existing lab)")
    ap.add_argument("--addrs", default="", help="with --netns, the ranks' addresses, comma-separated (rank 0's serves the rendezvous)")
    args = ap.parse_args()
    args.sizes = parse_sizes(args.size)
    if args.world < 1 or args.iters < 1 or args.warmup < 1:
        raise SystemExit("--world, --iters and --warmup must be at least 1")
    lab = None
    if args.netlab:
        if args.netns:
            raise SystemExit("--netlab and --netns: one or the other")
        link = parse_link(args.netlab)
        try:
            lab = Lab(args.world, link)
        except (OSError, RuntimeError) as e:
            raise SystemExit(f"--netlab: cannot build the lab (root and iproute2 needed): {e}")
        args.netns, args.addrs = ",".join(lab.ns), ",".join(lab.addrs)
    args.netns = [n for n in args.netns.split(",") if n]
    args.addrs = [a for a in args.addrs.split(",") if a]
    if args.netns and (len(args.netns) != args.world or len(args.addrs) != args.world):
        raise SystemExit(f"--netns and --addrs: want {args.world} of each, one per rank")
    try:
        run(args, lab)
    finally:
        if lab:
            lab.close()


def run(args, lab):
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port() if not args.netns else random.randrange(20000, 60000)
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
                   "netlab": args.netlab, "results": rows}, sys.stdout)
        print()
        return
    where = "processes on 127.0.0.1"
    if args.netlab:
        where = f"processes in lab namespaces, links {args.netlab}"
    elif args.netns:
        where = "processes in namespaces " + ",".join(args.netns)
    print(f"# PyTorch {torch.__version__} gloo all-reduce: {w} ranks as {where}")
    print(f"# {'size(B)':>12} {'count':>12} {'type':>6} {'iters':>6} {'time(us)':>12} {'algbw(GB/s)':>12} {'busbw(GB/s)':>12}")
    for r in rows:
        print(f"  {r['bytes']:12d} {r['count']:12d} {'float':>6} {args.iters:6d} {r['time_us']:12.1f} "
              f"{r['algbw_gbps']:12.3f} {r['busbw_gbps']:12.3f}")


if __name__ == "__main__":
    main()
