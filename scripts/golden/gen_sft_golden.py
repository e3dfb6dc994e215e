#!/usr/bin/env python3
"""Reference ("golden") data for ringtrain's supervised fine-tuning loss.

The masked SFT loss is the mean cross-entropy over the trained (answer) targets of the
GLOBAL batch: sum over every row of every stream of mask * (-log p(target)), divided by
the number of trained targets of the whole batch. This script computes it, and the
gradient of every parameter, in float64 with the GPT-2 of gen_gpt2_golden.py on the
committed tiny model (model/testdata/golden/gpt2_tiny), for a batch of three rows
shaped like SFT examples (prompt, answer, end-of-text, padding) with a 0/1 mask. The
loss is written with explicit weights, independently of the -1 targets ringtrain uses.

The Go test (model/golden_sft_test.go) computes the same batch as two micro-batches
(rows 0-1 and row 2, as two streams would), each backward scaled by 1/(global trained
count), and compares the loss and every gradient.

A second case, packed rows (model/testdata/golden/sft_packed.safetensors), puts two or
three examples into each row as `prepare --pack` does: positions restart at 0 in each
example, attention is block-diagonal causal (a token sees only the earlier tokens of
its own example), and the loss is the same masked mean. The reference is written with
explicit positions and an explicit (T,T) mask per row, and the script checks in
float64 that it equals the loss of the same examples each alone in a padded row. The
Go test (model/golden_sft_test.go, TestGoldenSFTPacked) runs GPT.ForwardPacked on the
packed rows, one micro-batch per row, and compares the loss and every gradient.

Run from the repository root:

    /usr/bin/python3 scripts/golden/gen_sft_golden.py

Needs only PyTorch; the Go build and tests never run it.
"""

import math
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import gen_gpt2_golden as g  # noqa: E402

DT = torch.float64
T = 8
EOT = g.BOS_EOS_ID  # 51: pads rows and ends answers
# Three examples as rows of T+1 tokens: prompt (untrained), answer (trained), EOT
# (trained), padding (EOT, untrained). The mask marks tokens trained as targets.
ROWS = [
    # tokens                                   mask
    ([7, 8, 9, 10, 20, 21, EOT, EOT, EOT], [0, 0, 0, 0, 1, 1, 1, 0, 0]),
    ([3, 4, 30, 31, 32, 33, EOT, EOT, EOT], [0, 0, 1, 1, 1, 1, 1, 0, 0]),
    ([11, 12, 13, 14, 15, 16, 40, EOT, EOT], [0, 0, 0, 0, 0, 0, 1, 1, 0]),
]


# Packed rows: inputs are tokens 0..T-1, targets 1..T of each row of T+1 tokens; SEGS
# gives each token's example (the padding after the last example its own). An
# example's first token is never trained (its mask byte is 0).
PACKED = [
    # tokens                                    mask                          example
    ([7, 8, 20, EOT, 3, 30, 31, 32, EOT], [0, 0, 1, 1, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1, 1]),
    ([11, 40, EOT, 12, 13, 41, EOT, EOT, EOT], [0, 1, 1, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 2, 2]),
]


def attention_masked(x, P, p, allowed):
    """Multi-head attention where allowed (B,T,T) says which keys a query sees."""
    Bn, Tn, C = x.shape
    H = g.N_HEAD
    hd = C // H
    qkv = g.conv1d(x, P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"])
    q, k, v = qkv.split(C, dim=-1)

    def heads(t):
        return t.view(Bn, Tn, H, hd).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
    att = att.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    att = torch.softmax(att, dim=-1)
    y = (att @ v).transpose(1, 2).reshape(Bn, Tn, C)
    return g.conv1d(y, P[p + "attn.c_proj.weight"], P[p + "attn.c_proj.bias"])


def forward_packed(P, idx, pos, seg):
    """GPT-2 over packed rows: position embeddings at pos (B,T), attention within an
    example (seg (B,T)) and causal."""
    Tn = idx.shape[1]
    causal = torch.tril(torch.ones(Tn, Tn, dtype=torch.bool))
    allowed = (seg.unsqueeze(2) == seg.unsqueeze(1)) & causal  # (B,T,T)
    x = P["wte.weight"][idx] + P["wpe.weight"][pos]
    for i in range(g.N_LAYER):
        p = "h.%d." % i
        x = x + attention_masked(g.layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"]), P, p, allowed)
        x = x + g.mlp(g.layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"]), P, p)
    x = g.layer_norm(x, P["ln_f.weight"], P["ln_f.bias"])
    return x @ P["wte.weight"].t()


def packed_case(P, out):
    toks = torch.tensor([r[0] for r in PACKED], dtype=torch.int64)
    mask = torch.tensor([r[1] for r in PACKED], dtype=DT)
    seg = torch.tensor([r[2] for r in PACKED], dtype=torch.int64)
    Bn, L = toks.shape
    first = torch.zeros_like(seg)  # each token's example start, offset in the row
    for b in range(Bn):
        for t in range(L):
            first[b, t] = t if t == 0 or seg[b, t] != seg[b, t - 1] else first[b, t - 1]
    pos = torch.arange(L).unsqueeze(0) - first
    inputs, targets, weights = toks[:, :-1], toks[:, 1:], mask[:, 1:]
    count = weights.sum()

    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    logits = forward_packed(leaves, inputs, pos[:, :-1], seg[:, :-1])
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    nll = -logp.gather(2, targets.unsqueeze(2)).squeeze(2)
    loss = (weights * nll).sum() / count
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names])

    # The contract: the same examples, each alone in a row padded with EOT (untrained),
    # through the plain causal forward, give the same loss.
    total = torch.zeros((), dtype=DT)
    for b in range(Bn):
        for s in sorted(set(seg[b].tolist())):
            idx = [t for t in range(L) if seg[b, t] == s]
            ex, w = toks[b, idx], mask[b, idx]
            row = torch.full((1, L), EOT, dtype=torch.int64)
            row[0, : len(idx)] = ex
            wr = torch.zeros((1, L), dtype=DT)
            wr[0, : len(idx)] = w
            lg = g.forward(P, row[:, :-1], True)
            lp = lg - torch.logsumexp(lg, dim=-1, keepdim=True)
            total = total + (wr[:, 1:] * -lp.gather(2, row[:, 1:].unsqueeze(2)).squeeze(2)).sum()
    alone = (total / count).item()
    assert abs(alone - loss.item()) < 1e-12, (alone, loss.item())

    tensors = [
        ("inputs", "I32", inputs.to(torch.int32)),
        ("targets", "I32", targets.to(torch.int32)),
        ("mask", "I32", weights.to(torch.int32)),
        ("start", "I32", first[:, :-1].to(torch.int32)),
        ("loss", "F32", g.f32(loss.detach().reshape(1))),
    ]
    for n, gr in zip(names, grads):
        tensors.append(("grad." + n, "F32", g.f32(gr)))
    path = os.path.join(out, "sft_packed.safetensors")
    g.write_safetensors(path, tensors)
    g.verify_file(path, tensors)
    print("sft packed: %d rows, %d trained targets, loss %.12f (alone %.12f) -> %s" % (Bn, int(count.item()), loss.item(), alone, path))


def main():
    out = os.path.normpath(os.path.join(here, "..", "..", "model", "testdata", "golden"))
    stored = g.read_safetensors(os.path.join(out, "gpt2_tiny", "model.safetensors"))
    P = {}
    for name, (_, shape, vals) in stored.items():
        name = name[len("transformer."):] if name.startswith("transformer.") else name
        if name == "lm_head.weight":
            continue
        P[name] = torch.tensor(vals, dtype=torch.float32).reshape(shape).to(DT)
    for name, shape, _, _ in g.param_specs():
        assert name in P and tuple(P[name].shape) == shape, name

    toks = torch.tensor([r[0] for r in ROWS], dtype=torch.int64)
    mask = torch.tensor([r[1] for r in ROWS], dtype=DT)
    inputs, targets, weights = toks[:, :-1], toks[:, 1:], mask[:, 1:]
    count = weights.sum()

    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    logits = g.forward(leaves, inputs, True)
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    nll = -logp.gather(2, targets.unsqueeze(2)).squeeze(2)  # (B,T)
    loss = (weights * nll).sum() / count
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names])

    # The same loss through cross_entropy with -1 targets (ringtrain's convention).
    ignored = torch.where(weights > 0, targets, torch.full_like(targets, -1))
    assert abs(g.cross_entropy(logits.detach(), ignored).item() - loss.item()) < 1e-12

    tensors = [
        ("inputs", "I32", inputs.to(torch.int32)),
        ("targets", "I32", targets.to(torch.int32)),
        ("mask", "I32", weights.to(torch.int32)),
        ("loss", "F32", g.f32(loss.detach().reshape(1))),
    ]
    for n, gr in zip(names, grads):
        tensors.append(("grad." + n, "F32", g.f32(gr)))
    path = os.path.join(out, "sft.safetensors")
    g.write_safetensors(path, tensors)
    g.verify_file(path, tensors)
    print("sft: %d rows, %d trained targets, loss %.12f -> %s" % (len(ROWS), int(count.item()), loss.item(), path))
    packed_case(P, out)


if __name__ == "__main__":
    main()
