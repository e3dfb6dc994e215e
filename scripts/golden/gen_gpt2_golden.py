#!/usr/bin/env python3
"""Reference ("golden") data for ringtrain's GPT-2.

A small GPT-2, written out in plain PyTorch and computed in float64, produces the
logits, losses, gradients and ten AdamW steps that the Go tests compare against.
The model follows Hugging Face's GPT2LMHeadModel exactly (see model/testdata/golden/
README.md for every detail). Outputs are float32 (int32 for token ids) safetensors
files written by hand, plus a Hugging Face style checkpoint directory.

Run from the repository root:

    /usr/bin/python3 scripts/golden/gen_gpt2_golden.py

Needs only PyTorch (tested with Debian's python3-torch 1.13). The Go build and tests
never run this script; they read its committed outputs.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

VOCAB = 53
N_POS = 16
N_EMBD = 32
N_LAYER = 2
N_HEAD = 4
LN_EPS = 1e-5
SEED = 42
B, T = 2, 8
MASK_ID = VOCAB - 1  # 52
BOS_EOS_ID = 51
MASK_PROB = 0.30

# AdamW run on the causal batch
ADAM_STEPS = 10
LR = 1e-2
BETA1, BETA2 = 0.9, 0.95
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.1
MAX_GRAD_NORM = 1.0

DT = torch.float64


# ---------------------------------------------------------------------------
# Parameters: Hugging Face names (without "transformer."), Hugging Face layouts.
# Conv1D weights are [in, out] and applied as y = x @ W + b.
# ---------------------------------------------------------------------------

def param_specs():
    """(name, shape, kind, decay) in ringtrain slab order."""
    C = N_EMBD
    specs = [
        ("wte.weight", (VOCAB, C), "w", True),
        ("wpe.weight", (N_POS, C), "w", True),
    ]
    for i in range(N_LAYER):
        p = "h.%d." % i
        specs += [
            (p + "ln_1.weight", (C,), "lnw", False),
            (p + "ln_1.bias", (C,), "lnb", False),
            (p + "attn.c_attn.weight", (C, 3 * C), "w", True),
            (p + "attn.c_attn.bias", (3 * C,), "b", False),
            (p + "attn.c_proj.weight", (C, C), "wres", True),
            (p + "attn.c_proj.bias", (C,), "b", False),
            (p + "ln_2.weight", (C,), "lnw", False),
            (p + "ln_2.bias", (C,), "lnb", False),
            (p + "mlp.c_fc.weight", (C, 4 * C), "w", True),
            (p + "mlp.c_fc.bias", (4 * C,), "b", False),
            (p + "mlp.c_proj.weight", (4 * C, C), "wres", True),
            (p + "mlp.c_proj.bias", (C,), "b", False),
        ]
    specs += [
        ("ln_f.weight", (C,), "lnw", False),
        ("ln_f.bias", (C,), "lnb", False),
    ]
    return specs


def init_params(gen):
    """Seeded init. Values are drawn in float32 (what the files hold) and promoted to
    float64, so the float64 reference starts from exactly the stored weights."""
    params = {}
    for name, shape, kind, _ in param_specs():
        z = torch.randn(shape, generator=gen, dtype=torch.float32)
        if kind == "w":
            v = z * 0.02
        elif kind == "wres":
            v = z * (0.02 / math.sqrt(2 * N_LAYER))
        elif kind == "b":
            v = z * 0.02
        elif kind == "lnw":
            v = 1.0 + z * 0.1
        elif kind == "lnb":
            v = z * 0.1
        else:
            raise ValueError(kind)
        params[name] = v.to(torch.float32).to(DT)
    return params


# ---------------------------------------------------------------------------
# The model, written out op by op
# ---------------------------------------------------------------------------

def layer_norm(x, w, b):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance
    return (x - mean) / torch.sqrt(var + LN_EPS) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def conv1d(x, w, b):
    return x @ w + b


def attention(x, P, p, causal):
    Bn, Tn, C = x.shape
    H = N_HEAD
    hd = C // H
    qkv = conv1d(x, P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"])  # (B,T,3C)
    q, k, v = qkv.split(C, dim=-1)

    def heads(t):  # (B,T,C) -> (B,H,T,hd); head h is columns [h*hd, (h+1)*hd)
        return t.view(Bn, Tn, H, hd).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B,H,T,T)
    if causal:
        future = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), diagonal=1)
        att = att.masked_fill(future, float("-inf"))
    att = torch.softmax(att, dim=-1)
    y = att @ v  # (B,H,T,hd)
    y = y.transpose(1, 2).reshape(Bn, Tn, C)
    return conv1d(y, P[p + "attn.c_proj.weight"], P[p + "attn.c_proj.bias"])


def mlp(x, P, p):
    h = conv1d(x, P[p + "mlp.c_fc.weight"], P[p + "mlp.c_fc.bias"])
    h = gelu_new(h)
    return conv1d(h, P[p + "mlp.c_proj.weight"], P[p + "mlp.c_proj.bias"])


def forward(P, idx, causal):
    Bn, Tn = idx.shape
    pos = torch.arange(Tn)
    x = P["wte.weight"][idx] + P["wpe.weight"][pos].unsqueeze(0)
    for i in range(N_LAYER):
        p = "h.%d." % i
        x = x + attention(layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"]), P, p, causal)
        x = x + mlp(layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"]), P, p)
    x = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"])
    return x @ P["wte.weight"].t()  # tied LM head, (B,T,V)


def cross_entropy(logits, targets):
    """Mean over targets != -1 of -log softmax(logits)[target]."""
    V = logits.shape[-1]
    lg = logits.reshape(-1, V)
    tg = targets.reshape(-1)
    keep = tg != -1
    logp = lg - torch.logsumexp(lg, dim=-1, keepdim=True)
    picked = logp[keep].gather(1, tg[keep].unsqueeze(1)).squeeze(1)
    return -picked.mean()


def loss_and_grads(P, idx, targets, causal):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    logits = forward(leaves, idx, causal)
    loss = cross_entropy(logits, targets)
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names])
    return logits.detach(), loss.detach(), {n: g.detach() for n, g in zip(names, grads)}


# ---------------------------------------------------------------------------
# Independent checks of the model code
# ---------------------------------------------------------------------------

def check_against_torch_ops(P, idx, causal):
    """Recompute the forward with torch's own layer_norm / gelu(tanh) / cross_entropy."""
    def ln(x, w, b):
        return F.layer_norm(x, (x.shape[-1],), w, b, LN_EPS)

    Bn, Tn = idx.shape
    C, H = N_EMBD, N_HEAD
    hd = C // H
    x = F.embedding(idx, P["wte.weight"]) + P["wpe.weight"][:Tn]
    for i in range(N_LAYER):
        p = "h.%d." % i
        a = ln(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        qkv = torch.addmm(P[p + "attn.c_attn.bias"], a.reshape(-1, C), P[p + "attn.c_attn.weight"]).view(Bn, Tn, 3 * C)
        ys = []
        for h in range(H):
            q = qkv[..., h * hd:(h + 1) * hd]
            k = qkv[..., C + h * hd:C + (h + 1) * hd]
            v = qkv[..., 2 * C + h * hd:2 * C + (h + 1) * hd]
            s = torch.einsum("btd,bsd->bts", q, k) * (hd ** -0.5)
            if causal:
                s = s + torch.full((Tn, Tn), float("-inf"), dtype=DT).triu(1)
            ys.append(torch.einsum("bts,bsd->btd", F.softmax(s, dim=-1), v))
        y = torch.cat(ys, dim=-1)
        x = x + torch.addmm(P[p + "attn.c_proj.bias"], y.reshape(-1, C), P[p + "attn.c_proj.weight"]).view(Bn, Tn, C)
        m = ln(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        m = F.gelu(torch.addmm(P[p + "mlp.c_fc.bias"], m.reshape(-1, C), P[p + "mlp.c_fc.weight"]), approximate="tanh")
        x = x + torch.addmm(P[p + "mlp.c_proj.bias"], m, P[p + "mlp.c_proj.weight"]).view(Bn, Tn, C)
    x = ln(x, P["ln_f.weight"], P["ln_f.bias"])
    logits = F.linear(x, P["wte.weight"])
    return logits


def check_finite_differences(P, idx, targets, causal, grads, gen, per_tensor=3, h=1e-5):
    """Central differences on a few entries of every tensor. Returns the worst
    |fd - analytic| / (1e-9 + 1e-6 * |analytic|); below 1 passes."""
    worst = 0.0
    for name in P:
        flat = P[name].reshape(-1)
        picks = torch.randint(0, flat.numel(), (per_tensor,), generator=gen)
        for j in picks.tolist():
            def loss_at(delta):
                Q = dict(P)
                t = P[name].clone().reshape(-1)
                t[j] += delta
                Q[name] = t.view(P[name].shape)
                return cross_entropy(forward(Q, idx, causal), targets).item()
            fd = (loss_at(h) - loss_at(-h)) / (2 * h)
            an = grads[name].reshape(-1)[j].item()
            worst = max(worst, abs(fd - an) / (1e-9 + 1e-6 * abs(an)))
    return worst


# ---------------------------------------------------------------------------
# Gradient clipping and AdamW, by hand
# ---------------------------------------------------------------------------

def global_norm(grads):
    return math.sqrt(sum(float((g * g).sum()) for g in grads.values()))


def clip_(grads, max_norm):
    total = global_norm(grads)
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g.mul_(coef)
    return total


class AdamW:
    """Same arithmetic, in the same order, as torch.optim.AdamW (single-tensor path)."""

    def __init__(self, params, decay, lr, betas, eps, wd):
        self.decay = decay
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, wd
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        bc1 = 1.0 - self.b1 ** self.t
        bc2 = 1.0 - self.b2 ** self.t
        for k, p in params.items():
            g = grads[k]
            if self.decay[k]:
                p.mul_(1.0 - self.lr * self.wd)
            self.m[k].mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            self.v[k].mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
            denom = self.v[k].sqrt() / math.sqrt(bc2) + self.eps
            p.addcdiv_(self.m[k], denom, value=-(self.lr / bc1))


def run_adamw_by_hand(P0, idx, targets):
    P = {k: v.clone() for k, v in P0.items()}
    decay = {name: d for name, _, _, d in param_specs()}
    opt = AdamW(P, decay, LR, (BETA1, BETA2), ADAM_EPS, WEIGHT_DECAY)
    losses, norms = [], []
    for _ in range(ADAM_STEPS):
        _, loss, grads = loss_and_grads(P, idx, targets, causal=True)
        losses.append(loss.item())
        norms.append(clip_(grads, MAX_GRAD_NORM))
        opt.step(P, grads)
    _, final, _ = loss_and_grads(P, idx, targets, causal=True)
    return P, losses, norms, final.item()


def run_adamw_torch(P0, idx, targets):
    """The same run with torch.optim.AdamW and clip_grad_norm_, as a cross-check."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in P0.items()}
    decay = {name: d for name, _, _, d in param_specs()}
    groups = [
        {"params": [leaves[n] for n in leaves if decay[n]], "weight_decay": WEIGHT_DECAY},
        {"params": [leaves[n] for n in leaves if not decay[n]], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS, foreach=False)
    losses, norms = [], []
    for _ in range(ADAM_STEPS):
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(forward(leaves, idx, True), targets)
        loss.backward()
        losses.append(loss.item())
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(leaves.values()), MAX_GRAD_NORM)))
        opt.step()
    with torch.no_grad():
        final = cross_entropy(forward(leaves, idx, True), targets).item()
    return {k: v.detach() for k, v in leaves.items()}, losses, norms, final


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def causal_batch(gen):
    seq = torch.randint(0, VOCAB, (B, T + 1), generator=gen)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def masked_batch(gen):
    """Original tokens are drawn from [0, VOCAB-1) so the mask id never occurs naturally.
    Each position is selected with probability MASK_PROB (a row with none selected gets
    its position with the smallest draw). Selected positions: 80% -> MASK_ID, 10% -> a
    random token from [0, VOCAB-1), 10% -> left unchanged. Targets hold the original
    token at selected positions and -1 elsewhere."""
    orig = torch.randint(0, VOCAB - 1, (B, T), generator=gen)
    u = torch.rand((B, T), generator=gen, dtype=torch.float64)
    sel = u < MASK_PROB
    for r in range(B):
        if not sel[r].any():
            sel[r, int(torch.argmin(u[r]))] = True
    action = torch.rand((B, T), generator=gen, dtype=torch.float64)
    rand_tok = torch.randint(0, VOCAB - 1, (B, T), generator=gen)
    inputs = orig.clone()
    to_mask = sel & (action < 0.8)
    to_rand = sel & (action >= 0.8) & (action < 0.9)
    inputs[to_mask] = MASK_ID
    inputs[to_rand] = rand_tok[to_rand]
    targets = torch.where(sel, orig, torch.full_like(orig, -1))
    return inputs, targets, sel, to_mask, to_rand


# ---------------------------------------------------------------------------
# safetensors, by hand
# ---------------------------------------------------------------------------

_DTYPES = {"F32": (torch.float32, 4, "<f"), "I32": (torch.int32, 4, "<i")}


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype string, torch tensor). Data is laid out in order."""
    header = {}
    blobs = []
    off = 0
    for name, dt, t in tensors:
        tdt, size, fmt = _DTYPES[dt]
        flat = t.detach().to(tdt).contiguous().reshape(-1).tolist()
        raw = struct.pack("<%d%s" % (len(flat), fmt[1]), *flat)
        assert len(raw) == len(flat) * size
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # pad with spaces to an 8-byte boundary
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """Independent reader: returns {name: (dtype, shape, list of values)}, in file order."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    out = {}
    expect = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = info["data_offsets"]
        assert b0 == expect, (name, b0, expect)
        expect = b1
        count = 1
        for d in info["shape"]:
            count *= d
        fmt = {"F32": "f", "I32": "i"}[info["dtype"]]
        assert b1 - b0 == 4 * count, name
        out[name] = (info["dtype"], info["shape"], list(struct.unpack_from("<%d%s" % (count, fmt), body, b0)))
    assert expect == len(body), "trailing bytes"
    assert header["__metadata__"] == {"format": "pt"}
    return out


def verify_file(path, tensors):
    got = read_safetensors(path)
    names = [n for n, _, _ in tensors]
    assert list(got) == names, "tensor order differs"
    for name, dt, t in tensors:
        gdt, shape, vals = got[name]
        assert gdt == dt and shape == list(t.shape), name
        want = t.detach().to(_DTYPES[dt][0]).reshape(-1)
        back = torch.tensor(vals, dtype=_DTYPES[dt][0])
        assert torch.equal(back, want), name
    return len(got)


# ---------------------------------------------------------------------------

def f32(t):
    return t.to(torch.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "..", "model", "testdata", "golden")))
    args = ap.parse_args()
    out = args.out
    os.makedirs(os.path.join(out, "gpt2_tiny"), exist_ok=True)

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    P = init_params(gen)
    cin, ctg = causal_batch(gen)
    min_, mtg, sel, to_mask, to_rand = masked_batch(gen)
    check_gen = torch.Generator().manual_seed(SEED + 1)  # only for picking FD entries

    n_params = sum(v.numel() for v in P.values())
    print("parameters: %d tensors, %d floats" % (len(P), n_params))

    # --- causal ---
    c_logits, c_loss, c_grads = loss_and_grads(P, cin, ctg, causal=True)
    ref = check_against_torch_ops(P, cin, True)
    assert torch.allclose(ref, c_logits, rtol=0, atol=1e-12), "causal forward mismatch"
    assert abs(F.cross_entropy(ref.reshape(-1, VOCAB), ctg.reshape(-1)).item() - c_loss.item()) < 1e-12
    fd = check_finite_differences(P, cin, ctg, True, c_grads, check_gen)
    assert fd < 1, "causal finite differences: worst scaled error %g" % fd
    print("causal: finite-difference check passed (worst scaled error %.3f of 1)" % fd)

    P_final, losses, norms, final = run_adamw_by_hand(P, cin, ctg)
    assert abs(losses[0] - c_loss.item()) < 1e-15
    P_t, losses_t, norms_t, final_t = run_adamw_torch(P, cin, ctg)
    # The key slice of c_attn.bias has an exactly-zero true gradient (adding a constant
    # to every key shifts each softmax row uniformly); its computed gradient is rounding
    # noise of ~1e-20 that AdamW turns into moves of ~1e-13, which differ between the two
    # runs. Everything else must agree to float64 rounding.
    C = N_EMBD
    for k in P_final:
        a, b = P_final[k], P_t[k]
        if k.endswith("attn.c_attn.bias"):
            assert torch.allclose(a[C:2 * C], b[C:2 * C], rtol=0, atol=1e-11), "AdamW mismatch in " + k
            a, b = torch.cat([a[:C], a[2 * C:]]), torch.cat([b[:C], b[2 * C:]])
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15), "AdamW mismatch in " + k
    for a, b in zip(losses + norms + [final], losses_t + norms_t + [final_t]):
        assert abs(a - b) <= 1e-12 * max(1.0, abs(a)), (a, b)
    max_dp = max(float((P_final[k] - P_t[k]).abs().max()) for k in P_final)
    print("causal: hand AdamW vs torch.optim.AdamW (float64) max |dparam| = %.2e" % max_dp)

    # --- masked ---
    m_logits, m_loss, m_grads = loss_and_grads(P, min_, mtg, causal=False)
    ref = check_against_torch_ops(P, min_, False)
    assert torch.allclose(ref, m_logits, rtol=0, atol=1e-12), "masked forward mismatch"
    assert abs(F.cross_entropy(ref.reshape(-1, VOCAB), mtg.reshape(-1), ignore_index=-1).item() - m_loss.item()) < 1e-12
    fd = check_finite_differences(P, min_, mtg, False, m_grads, check_gen)
    assert fd < 1, "masked finite differences: worst scaled error %g" % fd
    print("masked: finite-difference check passed (worst scaled error %.3f of 1)" % fd)
    # bidirectional: a later token must influence an earlier logit
    assert not torch.allclose(m_logits, forward(P, min_, True))

    # --- files ---
    weights = [("transformer." + n, "F32", f32(P[n])) for n, _, _, _ in param_specs()]
    wpath = os.path.join(out, "gpt2_tiny", "model.safetensors")
    write_safetensors(wpath, weights)

    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": VOCAB,
        "n_positions": N_POS,
        "n_ctx": N_POS,
        "n_embd": N_EMBD,
        "n_layer": N_LAYER,
        "n_head": N_HEAD,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LN_EPS,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": BOS_EOS_ID,
        "eos_token_id": BOS_EOS_ID,
        "tie_word_embeddings": True,
    }
    with open(os.path.join(out, "gpt2_tiny", "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    names = [n for n, _, _, _ in param_specs()]
    causal = [
        ("inputs", "I32", cin),
        ("targets", "I32", ctg),
        ("logits", "F32", f32(c_logits)),
        ("loss", "F32", f32(c_loss.reshape(1))),
    ]
    causal += [("grad." + n, "F32", f32(c_grads[n])) for n in names]
    causal += [
        ("adamw.losses", "F32", torch.tensor(losses, dtype=torch.float32)),
        ("adamw.grad_norms", "F32", torch.tensor(norms, dtype=torch.float32)),
        ("adamw.final_loss", "F32", torch.tensor([final], dtype=torch.float32)),
    ]
    causal += [("adamw.param." + n, "F32", f32(P_final[n])) for n in names]
    cpath = os.path.join(out, "causal.safetensors")
    write_safetensors(cpath, causal)

    masked = [
        ("inputs", "I32", min_),
        ("targets", "I32", mtg),
        ("logits", "F32", f32(m_logits)),
        ("loss", "F32", f32(m_loss.reshape(1))),
    ]
    masked += [("grad." + n, "F32", f32(m_grads[n])) for n in names]
    mpath = os.path.join(out, "masked.safetensors")
    write_safetensors(mpath, masked)

    # --- read back ---
    for path, tensors in ((wpath, weights), (cpath, causal), (mpath, masked)):
        n = verify_file(path, tensors)
        print("verified %-40s %3d tensors %8d bytes" % (os.path.relpath(path, out), n, os.path.getsize(path)))
    # the stored weights reproduce the loss
    back = read_safetensors(wpath)
    Pb = {k[len("transformer."):]: torch.tensor(v[2], dtype=DT).view(v[1]) for k, v in back.items()}
    assert abs(cross_entropy(forward(Pb, cin, True), ctg).item() - c_loss.item()) < 1e-14

    # --- summary ---
    print("causal inputs:\n%s\ncausal targets:\n%s" % (cin.tolist(), ctg.tolist()))
    print("masked inputs:\n%s\nmasked targets:\n%s" % (min_.tolist(), mtg.tolist()))
    print("masked: %d selected (%d -> [MASK], %d -> random, %d unchanged)" % (
        int(sel.sum()), int(to_mask.sum()), int(to_rand.sum()), int((sel & ~to_mask & ~to_rand).sum())))
    print("causal loss        %.9f" % c_loss.item())
    print("causal grad norm   %.9f" % global_norm(c_grads))
    print("masked loss        %.9f" % m_loss.item())
    print("masked grad norm   %.9f" % global_norm(m_grads))
    for i, (l, g) in enumerate(zip(losses, norms)):
        print("adamw step %2d  loss %.9f  grad_norm %.9f" % (i + 1, l, g))
    print("adamw final loss   %.9f" % final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
