#!/usr/bin/env python3
"""PyTorch CPU speed (and quality) reference for ringtrain's GPT-2 training.

Same architecture as ringtrain's model (GPT-2: learned positions, pre-LayerNorm,
eps 1e-5, tanh GELU, biases, tied LM head, no dropout), float32, causal LM, AdamW with
decoupled weight decay on 2-D weights only and global-norm clipping.

Speed, on random tokens:

    /usr/bin/python3 scripts/bench/torch_train.py --layers 4 --heads 4 --embd 128 \
        --seq 64 --batch 12 --vocab 67 --steps 60 --warmup 10 --threads 2

Quality, on tinyshakespeare (char level, 90/10 split; the vocabulary is the sorted
distinct characters plus two unused ids, EOT and mask, as ringtrain's char tokenizer):

    /usr/bin/python3 scripts/bench/torch_train.py --layers 4 --heads 4 --embd 128 \
        --seq 64 --batch 12 --steps 2000 --data /work/shared/data/tinyshakespeare.txt

In --data mode the schedule is linear warmup over --lr-warmup steps to --lr, then cosine
decay to --min-lr at --steps. --warmup is always the number of first steps left out of
the timing.

Time to a validation loss, as ringtrain's metrics.jsonl gives it (elapsed_s of the first
record whose val_loss is at or below the target; wall time from the first step,
evaluations included):

    /usr/bin/python3 scripts/bench/torch_train.py --layers 4 --heads 4 --embd 128 \
        --seq 64 --batch 12 --steps 2000 --data /work/shared/data/tinyshakespeare.txt \
        --eval-interval 100 --eval-iters 100 --target-val-loss 1.95
"""

import argparse
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, embd, heads, max_seq):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(embd, eps=1e-5)
        self.c_attn = nn.Linear(embd, 3 * embd)
        self.attn_proj = nn.Linear(embd, embd)
        self.ln_2 = nn.LayerNorm(embd, eps=1e-5)
        self.c_fc = nn.Linear(embd, 4 * embd)
        self.mlp_proj = nn.Linear(4 * embd, embd)
        mask = torch.triu(torch.ones(max_seq, max_seq, dtype=torch.bool), diagonal=1)
        self.register_buffer("future", mask, persistent=False)

    def attn(self, x):
        B, T, C = x.shape
        H = self.heads
        hd = C // H
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = k.view(B, T, H, hd).transpose(1, 2)
        v = v.view(B, T, H, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(self.future[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.attn_proj(y)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, layers, heads, embd, max_seq, vocab):
        super().__init__()
        self.wte = nn.Embedding(vocab, embd)
        self.wpe = nn.Embedding(max_seq, embd)
        self.h = nn.ModuleList([Block(embd, heads, max_seq) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(embd, eps=1e-5)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02
                if name.endswith("attn_proj.weight") or name.endswith("mlp_proj.weight"):
                    std = 0.02 / math.sqrt(2 * layers)
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:T]
        for blk in self.h:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def make_optimizer(model, lr, wd, betas):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-8, foreach=True), "foreach"
    except (TypeError, RuntimeError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-8), "default"


def lr_at(step, args):
    """step is 0-based. Linear warmup, then cosine from lr to min_lr over the rest."""
    if step < args.lr_warmup:
        return args.lr * (step + 1) / args.lr_warmup
    span = max(1, args.steps - args.lr_warmup)
    ratio = min(1.0, (step - args.lr_warmup) / span)
    return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.lr - args.min_lr)


def blas_kernel():
    """OpenBLAS core in use, if torch's BLAS is OpenBLAS (Debian's build is)."""
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return "OpenBLAS " + lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "unknown (see torch.__config__.show())"


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU GPT-2 training reference")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=67, help="random-token vocabulary (ignored with --data)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10, help="first steps left out of the timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (timing synchronises the GPU)")
    ap.add_argument("--data", default="", help="text file (tinyshakespeare) for a real char-level run")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--lr-warmup", type=int, default=100, help="LR warmup steps (--data mode)")
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-interval", type=int, default=250, help="--data mode; 0 = only at the end")
    ap.add_argument("--eval-iters", type=int, default=200, help="val batches per evaluation")
    ap.add_argument("--target-val-loss", type=float, default=0.0,
                    help="--data mode: stop at the first evaluation at or below this loss and print the wall time to it")
    args = ap.parse_args()
    if args.embd % args.heads:
        sys.exit("embd must be a multiple of heads")
    if args.warmup >= args.steps:
        sys.exit("--warmup must be smaller than --steps")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    train = val = None
    if args.data:
        with open(args.data, "r", encoding="utf-8") as f:
            text = f.read()
        chars = sorted(set(text))
        stoi = {c: i for i, c in enumerate(chars)}
        ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
        n = int(0.9 * len(ids))
        train, val = ids[:n], ids[n:]
        vocab = len(chars) + 2  # + EOT and mask ids, never used in the data
        print("data: %s, %d chars, vocab %d (+2 unused), train %d / val %d tokens" % (
            args.data, len(text), len(chars), len(train), len(val)))
    else:
        vocab = args.vocab

    def batch(split):
        if split is None:
            xy = torch.randint(0, vocab, (args.batch, args.seq + 1), generator=gen)
        else:
            starts = torch.randint(0, len(split) - args.seq - 1, (args.batch,), generator=gen)
            xy = torch.stack([split[s:s + args.seq + 1] for s in starts.tolist()])
        return xy[:, :-1].contiguous().to(args.device), xy[:, 1:].contiguous().to(args.device)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    model = GPT(args.layers, args.heads, args.embd, args.seq, vocab).to(args.device)
    nparams = sum(p.numel() for p in model.parameters())
    opt, kind = make_optimizer(model, args.lr, args.wd, (0.9, 0.95))

    print("torch %s, threads %d, BLAS %s, OPENBLAS_CORETYPE=%s, AdamW %s" % (
        torch.__version__, torch.get_num_threads(), blas_kernel(),
        os.environ.get("OPENBLAS_CORETYPE", "(unset)"), kind))
    print("model: layers %d heads %d embd %d seq %d batch %d vocab %d, %d params, device %s" % (
        args.layers, args.heads, args.embd, args.seq, args.batch, vocab, nparams, args.device))

    @torch.no_grad()
    def evaluate():
        model.eval()
        tot = 0.0
        for _ in range(args.eval_iters):
            x, y = batch(val)
            tot += model(x, y)[1].item()
        model.train()
        return tot / args.eval_iters

    t0 = None
    eval_time = 0.0  # evaluations are left out of the timing
    start = time.perf_counter()  # time to target counts from here, evaluations included
    reached = None
    for step in range(args.steps):
        if step == args.warmup:
            sync()
            t0 = time.perf_counter()
        lr = lr_at(step, args) if args.data else args.lr
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch(train)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if args.data:
            if step % 50 == 0 or step == args.steps - 1:
                print("step %5d  loss %.4f  norm %.3f  lr %.2e" % (step, loss.item(), float(norm), lr))
            # After step+1 updates, as ringtrain counts steps.
            if args.eval_interval and (step + 1) % args.eval_interval == 0:
                te = time.perf_counter()
                vl = evaluate()
                if t0 is not None:
                    eval_time += time.perf_counter() - te
                print("step %5d  val loss %.4f  elapsed %.1f s" % (step + 1, vl, time.perf_counter() - start))
                if args.target_val_loss and vl <= args.target_val_loss:
                    reached = (step + 1, vl, time.perf_counter() - start)
                    print("reached val loss %.4f <= %.4f at step %d after %.1f s (evaluations included)" % (
                        vl, args.target_val_loss, step + 1, reached[2]))
                    break
        elif step == 0 or step == args.steps - 1:
            print("step %5d  loss %.4f" % (step, loss.item()))
    if reached is not None:
        return 0
    if args.target_val_loss:
        print("did not reach val loss %.4f in %d steps" % (args.target_val_loss, args.steps))
    sync()
    elapsed = time.perf_counter() - t0 - eval_time
    timed = args.steps - args.warmup
    toks = timed * args.batch * args.seq
    print("timed %d steps (after %d warmup): %.3f s, %.1f ms/step, %.0f tokens/s" % (
        timed, args.warmup, elapsed, 1000.0 * elapsed / timed, toks / elapsed))
    print("peak RSS %.1f MiB" % peak_rss_mib())
    if args.data:
        print("final val loss %.4f (%d batches)" % (evaluate(), args.eval_iters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
