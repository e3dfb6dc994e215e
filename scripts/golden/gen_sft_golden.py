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

Run from the repository root:

    /usr/bin/python3 scripts/golden/gen_sft_golden.py

Needs only PyTorch; the Go build and tests never run it.
"""

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


if __name__ == "__main__":
    main()
