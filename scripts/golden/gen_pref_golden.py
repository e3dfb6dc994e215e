#!/usr/bin/env python3
"""Reference ("golden") data for ringtrain's preference objectives.

Two cases on the committed tiny GPT-2 (model/testdata/golden/gpt2_tiny), in float64,
with two preference pairs (four rows of T+1 tokens: chosen then rejected, each a
prompt, an answer, an end-of-text and padding, with a 0/1 mask over the answer):

* reward (pref_reward.safetensors): a reward model is the GPT-2 with a scalar head
  score.weight (1, n_embd), no bias, read from the final LayerNorm's output at each
  row's last real token (the answer's last token, before the end-of-text padding), as
  Hugging Face's GPT2ForSequenceClassification does with one label and pad_token_id
  the end-of-text. The Bradley-Terry loss is the
  mean over the pairs of -log sigmoid(r_chosen - r_rejected). Stored: the rows, the
  last positions, score.weight, the rewards, the loss and the gradient of every
  parameter (score.weight included).

* dpo (pref_dpo.safetensors): the policy is the tiny model; the reference
  log-probabilities are those of a perturbed copy (every weight plus normal noise of
  0.02), stored rounded to float32. A row's log-probability is the sum of the
  log-probabilities of its masked (answer) targets. The loss is the mean over pairs
  of -log sigmoid(beta*((pi_c - ref_c) - (pi_r - ref_r))), beta = 0.5. Stored: the
  rows, the mask, the reference log-probabilities, the policy's, the loss and the
  gradient of every parameter.

* dpo_nll (pref_dpo_nll.safetensors): the dpo case's rows, reference and beta, with
  the NLL term on the chosen answers added: the loss is the mean over pairs of
  -log sigmoid(z) + alpha * (-pi_c / n_c), n_c the chosen answer's masked target
  count (its mean per-token NLL), alpha = 0.7. Stored as the dpo case, plus alpha.

The Go tests (model/golden_pref_test.go) compute each case as two micro-batches (one
pair each, as two streams would), each normalised by the global pair count, and
compare the loss and every gradient.

Run from the repository root:

    /usr/bin/python3 scripts/golden/gen_pref_golden.py [CASE...]

CASE is reward, dpo or dpo_nll (default: all three).

Needs only PyTorch; the Go build and tests never run it.
"""

import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import gen_gpt2_golden as g  # noqa: E402

DT = torch.float64
EOT = g.BOS_EOS_ID
BETA = 0.5
ALPHA = 0.7
# Two pairs: rows 0/1 and 2/3 (chosen, rejected), T+1 = 9 tokens each.
ROWS = [
    ([7, 8, 9, 10, 20, 21, EOT, EOT, EOT], [0, 0, 0, 0, 1, 1, 1, 0, 0]),
    ([7, 8, 9, 10, 22, 23, EOT, EOT, EOT], [0, 0, 0, 0, 1, 1, 1, 0, 0]),
    ([3, 4, 30, 31, 32, EOT, EOT, EOT, EOT], [0, 0, 1, 1, 1, 1, 0, 0, 0]),
    ([3, 4, 32, 31, 30, EOT, EOT, EOT, EOT], [0, 0, 1, 1, 1, 1, 0, 0, 0]),
]


def hidden(P, idx):
    """The final LayerNorm's output (B,T,C) of the causal GPT-2."""
    x = P["wte.weight"][idx] + P["wpe.weight"][torch.arange(idx.shape[1])]
    for i in range(g.N_LAYER):
        p = "h.%d." % i
        x = x + g.attention(g.layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"]), P, p, True)
        x = x + g.mlp(g.layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"]), P, p)
    return g.layer_norm(x, P["ln_f.weight"], P["ln_f.bias"])


def load_tiny():
    out = os.path.normpath(os.path.join(here, "..", "..", "model", "testdata", "golden"))
    stored = g.read_safetensors(os.path.join(out, "gpt2_tiny", "model.safetensors"))
    P = {}
    for name, (_, shape, vals) in stored.items():
        name = name[len("transformer."):] if name.startswith("transformer.") else name
        if name == "lm_head.weight":
            continue
        P[name] = torch.tensor(vals, dtype=torch.float32).reshape(shape).to(DT)
    return out, P


def rows():
    toks = torch.tensor([r[0] for r in ROWS], dtype=torch.int64)
    mask = torch.tensor([r[1] for r in ROWS], dtype=DT)
    return toks[:, :-1], toks[:, 1:], mask[:, 1:]


def reward_case(out, P):
    inputs, targets, weights = rows()
    # The last real token: the input position whose target is the row's last trained
    # target (the end-of-text closing the answer) holds the answer's last token, the
    # token before the first padding (end-of-text is GPT-2's pad), which is where
    # GPT2ForSequenceClassification reads the score.
    last = []
    for b in range(inputs.shape[0]):
        last.append(max(i for i in range(weights.shape[1]) if weights[b, i] > 0))
    gen = torch.Generator().manual_seed(7)
    score = (torch.randn(1, g.N_EMBD, generator=gen, dtype=DT) * 0.3).to(torch.float32).to(DT)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    leaves["score.weight"] = score.clone().requires_grad_(True)
    h = hidden(leaves, inputs)  # (B,T,C)
    hl = h[torch.arange(h.shape[0]), torch.tensor(last)]  # (B,C)
    r = (hl @ leaves["score.weight"].t()).squeeze(1)  # (B)
    loss = -torch.nn.functional.logsigmoid(r[0::2] - r[1::2]).mean()
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names])
    tensors = [
        ("inputs", "I32", inputs.to(torch.int32)),
        ("last", "I32", torch.tensor(last, dtype=torch.int32)),
        ("score.weight", "F32", g.f32(score)),
        ("rewards", "F32", g.f32(r.detach())),
        ("loss", "F32", g.f32(loss.detach().reshape(1))),
    ]
    for n, gr in zip(names, grads):
        tensors.append(("grad." + n, "F32", g.f32(gr)))
    path = os.path.join(out, "pref_reward.safetensors")
    g.write_safetensors(path, tensors)
    g.verify_file(path, tensors)
    print("reward: rewards %s, loss %.12f -> %s" % ([round(v, 6) for v in r.tolist()], loss.item(), path))


def row_logps(P, inputs, targets, weights):
    logits = g.forward(P, inputs, True)
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    tok = logp.gather(2, targets.unsqueeze(2)).squeeze(2)
    return (weights * tok).sum(dim=1)  # (B)


def dpo_case(out, P, alpha=0.0):
    """The dpo case, or with alpha > 0 the dpo_nll case."""
    inputs, targets, weights = rows()
    gen = torch.Generator().manual_seed(11)
    R = {k: v + 0.02 * torch.randn(v.shape, generator=gen, dtype=DT) for k, v in P.items()}
    with torch.no_grad():
        ref = row_logps(R, inputs, targets, weights).to(torch.float32).to(DT)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    pi = row_logps(leaves, inputs, targets, weights)
    z = BETA * ((pi[0::2] - ref[0::2]) - (pi[1::2] - ref[1::2]))
    loss = -torch.nn.functional.logsigmoid(z)
    if alpha:
        loss = loss + alpha * (-pi[0::2] / weights[0::2].sum(dim=1))
    loss = loss.mean()
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names])
    tensors = [
        ("inputs", "I32", inputs.to(torch.int32)),
        ("targets", "I32", targets.to(torch.int32)),
        ("mask", "I32", weights.to(torch.int32)),
        ("ref_logp", "F32", g.f32(ref)),
        ("logp", "F32", g.f32(pi.detach())),
        ("beta", "F32", torch.tensor([BETA], dtype=torch.float32)),
        ("loss", "F32", g.f32(loss.detach().reshape(1))),
    ]
    name = "dpo"
    if alpha:
        tensors.append(("alpha", "F32", torch.tensor([alpha], dtype=torch.float32)))
        name = "dpo_nll"
    for n, gr in zip(names, grads):
        tensors.append(("grad." + n, "F32", g.f32(gr)))
    path = os.path.join(out, "pref_%s.safetensors" % name)
    g.write_safetensors(path, tensors)
    g.verify_file(path, tensors)
    print(name + ": logp %s, ref %s, loss %.12f -> %s" % ([round(v, 5) for v in pi.tolist()], [round(v, 5) for v in ref.tolist()], loss.item(), path))


def main():
    cases = {"reward": reward_case, "dpo": dpo_case, "dpo_nll": lambda out, P: dpo_case(out, P, ALPHA)}
    want = sys.argv[1:] or list(cases)
    for c in want:
        if c not in cases:
            sys.exit("unknown case %r: want %s" % (c, ", ".join(cases)))
    out, P = load_tiny()
    inputs, _, _ = rows()
    # hidden is the trunk of gen_gpt2_golden.forward.
    assert torch.allclose(hidden(P, inputs) @ P["wte.weight"].t(), g.forward(P, inputs, True), atol=1e-12)
    for c in want:
        cases[c](out, P)


if __name__ == "__main__":
    main()
