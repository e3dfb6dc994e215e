#!/usr/bin/env python3
"""Evaluate a Hugging Face GPT-2 directory written by `ringtrain export` with the
independent PyTorch GPT-2 of gen_gpt2_golden.py, on the validation split of a dataset
made by `ringtrain prepare`, batch for batch as `ringtrain eval` reads it (sequential
windows: batch i, row r = tokens [i*b*T + r*T, i*b*T + r*T + T + 1)).

    /usr/bin/python3 scripts/golden/eval_export.py EXPORT_DIR DATA_DIR --batch 8 --seq 64 --batches 20
"""

import argparse
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_gpt2_golden as g  # noqa: E402


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack_from("<256i", data, 0)
    magic, version, n = header[0], header[1], header[2]
    if magic == 20240520 and version == 1:
        return torch.tensor(struct.unpack_from("<%dH" % n, data, 1024), dtype=torch.long)
    if magic == 20240801 and version == 7:
        return torch.tensor(struct.unpack_from("<%dI" % n, data, 1024), dtype=torch.long)
    raise SystemExit("%s: not an llm.c shard" % path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("data")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20)
    a = ap.parse_args()

    cfg = json.load(open(os.path.join(a.export, "config.json")))
    g.N_LAYER, g.N_HEAD = cfg["n_layer"], cfg["n_head"]
    raw = g.read_safetensors(os.path.join(a.export, "model.safetensors"))
    P = {}
    for name, (_, shape, values) in raw.items():
        P[name[len("transformer."):] if name.startswith("transformer.") else name] = \
            torch.tensor(values, dtype=g.DT).reshape(shape)

    man = json.load(open(os.path.join(a.data, "manifest.json")))
    val = torch.cat([read_shard(os.path.join(a.data, s["file"])) for s in man["val_shards"]])
    b, T = a.batch, a.seq
    total, count = 0.0, 0
    for i in range(a.batches):
        rows = [val[i * b * T + r * T: i * b * T + r * T + T + 1] for r in range(b)]
        if len(rows[-1]) < T + 1:
            break
        x = torch.stack([r[:T] for r in rows])
        y = torch.stack([r[1:] for r in rows])
        with torch.no_grad():
            loss = g.cross_entropy(g.forward(P, x, True), y)
        total += loss.item() * b * T
        count += b * T
    print("pytorch float64 loss on %d batches of %d x %d: %.6f" % (count // (b * T), b, T, total / count))


if __name__ == "__main__":
    main()
