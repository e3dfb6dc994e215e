#!/usr/bin/env python3
"""Reference ("golden") data for ringtrain's PPO objective.

One PPO update on fixed rollouts, in float64, on the committed tiny GPT-2
(model/testdata/golden/gpt2_tiny) with a value head: value.weight (1, n_embd) and
value.bias (1) on the final LayerNorm's output at every position.

Four rollout rows (two micro-batches of two, as two streams would hold them), each a
prompt, a sampled answer and (for three of them) the end-of-text, in rows of T input
positions; the targets are the answer's tokens (the end-of-text included), -1
elsewhere. An input position with a target is one action.

Fixed rollout numbers: the sampling policy's log-probabilities and values are the
current model's plus noise (so that the probability ratios and the values move away
from the rollout's, some beyond the clip ranges), the reference's log-probabilities
come from a perturbed copy of the model, and each answer has a reward-model score.
All are stored rounded to float32, and the computation starts from the rounded
numbers.

The update, as trainer/ppo.go and model/ppo.go do it:

* per-token rewards -beta*(old_logp - ref_logp), the score added at the last token;
* GAE over each answer (gamma, lambda), the value after the last action 0;
  returns = advantages + old values;
* advantages whitened with the mean and population variance of all four rows'
  tokens (the global batch): (A - mean) / sqrt(var + 1e-8);
* loss = mean over tokens of max(-A*ratio, -A*clip(ratio, 1-eps, 1+eps))
         + vf_coef * mean of 1/2 max((V-R)^2, (oldV + clip(V-oldV, -vclip, vclip) - R)^2)
         - ent_coef * mean entropy.

Stored: the rows, the rollout numbers, the advantages (whitened) and returns, the
current log-probabilities, values and entropies, the loss and the gradient of every
parameter, the value head's included. model/golden_ppo_test.go recomputes it all as
two micro-batches and compares.

Run from the repository root:

    /usr/bin/python3 scripts/golden/gen_ppo_golden.py

Needs only PyTorch; the Go build and tests never run it.
"""

import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import gen_gpt2_golden as g  # noqa: E402
import gen_pref_golden as pg  # noqa: E402

DT = torch.float64
EOT = g.BOS_EOS_ID
T = 10
BETA, GAMMA, LAM = 0.1, 0.9, 0.8
CLIP, VCLIP, VF, ENT = 0.2, 0.2, 0.5, 0.01
# (prompt, answer with its end-of-text when sampled)
ROLLS = [
    ([7, 8, 9], [20, 21, 22, EOT]),
    ([3, 4], [30, 31, 32, 33, 34, EOT]),
    ([5, 6, 7, 8], [40, 41]),  # cut at max_new_tokens: no end-of-text
    ([9, 10, 11], [12, EOT]),
]
SCORES = [1.5, -0.7, 0.3, 2.2]


def rows():
    inputs = torch.full((len(ROLLS), T), EOT, dtype=torch.int64)
    targets = torch.full((len(ROLLS), T), -1, dtype=torch.int64)
    for b, (p, a) in enumerate(ROLLS):
        seq = p + a
        assert len(seq) - 1 <= T
        inputs[b, : len(seq) - 1] = torch.tensor(seq[:-1])
        for pos in range(len(p) - 1, len(seq) - 1):
            targets[b, pos] = seq[pos + 1]
    return inputs, targets


def outputs(P, inputs, targets):
    """Per position (B,T): log-probability of the target, entropy, value."""
    h = pg.hidden(P, inputs)
    logits = h @ P["wte.weight"].t()
    logp_all = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    tg = targets.clamp(min=0)
    logp = logp_all.gather(2, tg.unsqueeze(2)).squeeze(2)
    ent = -(logp_all.exp() * logp_all).sum(-1)
    value = (h @ P["value.weight"].t()).squeeze(2) + P["value.bias"]
    return logp, ent, value


def r32(x):
    return x.to(torch.float32).to(DT)


def main():
    out, P = pg.load_tiny()
    gen = torch.Generator().manual_seed(23)
    P["value.weight"] = r32(torch.randn(1, g.N_EMBD, generator=gen, dtype=DT) * 0.3)
    P["value.bias"] = torch.tensor([0.1], dtype=DT)
    inputs, targets = rows()
    act = targets >= 0
    with torch.no_grad():
        logp0, _, v0 = outputs(P, inputs, targets)
        R = {k: v + 0.02 * torch.randn(v.shape, generator=gen, dtype=DT) for k, v in P.items()}
        ref_logp, _, _ = outputs(R, inputs, targets)
    old_logp = r32(logp0 + 0.25 * torch.randn(logp0.shape, generator=gen, dtype=DT)) * act
    old_value = r32(v0 + 0.3 * torch.randn(v0.shape, generator=gen, dtype=DT)) * act
    ref_logp = r32(ref_logp) * act
    scores = r32(torch.tensor(SCORES, dtype=DT))

    # Rewards, GAE, returns: per row over its actions.
    adv = torch.zeros_like(old_logp)
    ret = torch.zeros_like(old_logp)
    for b in range(len(ROLLS)):
        pos = [t for t in range(T) if act[b, t]]
        rew = [-BETA * (old_logp[b, t] - ref_logp[b, t]) for t in pos]
        rew[-1] = rew[-1] + scores[b]
        a_next, v_next = 0.0, 0.0
        for j in reversed(range(len(pos))):
            t = pos[j]
            delta = rew[j] + GAMMA * v_next - old_value[b, t]
            a_next = delta + GAMMA * LAM * a_next
            adv[b, t], ret[b, t] = a_next, a_next + old_value[b, t]
            v_next = old_value[b, t]
    n = act.sum()
    mean = adv[act].sum() / n
    var = (adv[act] ** 2).sum() / n - mean**2
    adv_w = (adv - mean) / torch.sqrt(var + 1e-8) * act

    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    logp, ent, value = outputs(leaves, inputs, targets)
    ratio = torch.exp(logp - old_logp)
    pl = torch.maximum(-adv_w * ratio, -adv_w * torch.clamp(ratio, 1 - CLIP, 1 + CLIP))
    vc = old_value + torch.clamp(value - old_value, -VCLIP, VCLIP)
    vl = 0.5 * torch.maximum((value - ret) ** 2, (vc - ret) ** 2)
    loss = ((pl + VF * vl - ENT * ent) * act).sum() / n
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[k] for k in names])
    clipped = ((ratio - 1).abs() > CLIP)[act].sum().item()
    vclipped = ((value - old_value).abs() > VCLIP)[act].sum().item()
    print("tokens %d, ratios clipped %d, values clipped %d" % (n.item(), clipped, vclipped))
    assert 0 < clipped < n and 0 < vclipped < n, "the case must exercise both sides of each clip"

    tensors = [
        ("inputs", "I32", inputs.to(torch.int32)),
        ("targets", "I32", targets.to(torch.int32)),
        ("value.weight", "F32", g.f32(P["value.weight"])),
        ("value.bias", "F32", g.f32(P["value.bias"])),
        ("old_logp", "F32", g.f32(old_logp)),
        ("old_value", "F32", g.f32(old_value)),
        ("ref_logp", "F32", g.f32(ref_logp)),
        ("scores", "F32", g.f32(scores)),
        ("coefs", "F32", torch.tensor([BETA, GAMMA, LAM, CLIP, VCLIP, VF, ENT], dtype=torch.float32)),
        ("advantages", "F32", g.f32(adv_w)),
        ("returns", "F32", g.f32(ret)),
        ("logp", "F32", g.f32(logp.detach() * act)),
        ("entropy", "F32", g.f32(ent.detach() * act)),
        ("values", "F32", g.f32(value.detach())),
        ("loss", "F32", g.f32(loss.detach().reshape(1))),
    ]
    for k, gr in zip(names, grads):
        tensors.append(("grad." + k, "F32", g.f32(gr)))
    path = os.path.join(out, "ppo_update.safetensors")
    g.write_safetensors(path, tensors)
    g.verify_file(path, tensors)
    print("ppo: loss %.12f -> %s" % (loss.item(), path))


if __name__ == "__main__":
    main()
