#!/usr/bin/env python3
"""Check a `ringtrain export` directory with Hugging Face transformers.

Loads the export with AutoTokenizer and AutoModelForCausalLM, exactly as a user
would, and compares with what ringtrain computes for the same text (written by the
Go program scripts/hf/reference):

  - the token ids of the whole text, with the fast tokenizer (tokenizer.json) and,
    for byte-level tokenizers, the slow GPT2Tokenizer (vocab.json + merges.txt);
  - decoding those ids back to the text;
  - the logits of the first --max-tokens positions (max |difference| and argmax);
  - config.json / generation_config.json's EOT ids against the tokenizer's.

Run from the repository root (Go is needed for the reference):

    python3 scripts/hf/check_export.py EXPORT_DIR [--text-file FILE] [--max-tokens 64]

Needs transformers, tokenizers, safetensors and torch (for instance
`pip install transformers torch`). ringtrain's own build and tests never run it.
The text must not contain "<|endoftext|>" or "<|mask|>": transformers reads those
as the special tokens, ringtrain's tokenizers as ordinary text. Exits 0 when every
check passes, 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

SAMPLE = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
You are all resolved rather to die than to famish?
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", help="directory written by `ringtrain export`")
    ap.add_argument("--text-file", help="UTF-8 text to compare on (default: a few lines of Shakespeare)")
    ap.add_argument("--max-tokens", type=int, default=64, help="positions whose logits are compared")
    ap.add_argument("--atol", type=float, default=1e-3, help="largest logit difference accepted")
    ap.add_argument("--go", default="go", help="go command that runs scripts/hf/reference")
    args = ap.parse_args()

    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = SAMPLE
    if args.text_file:
        with open(args.text_file, encoding="utf-8") as f:
            text = f.read()
    for special in ("<|endoftext|>", "<|mask|>"):
        if special in text:
            sys.exit(f"the text contains {special}, which transformers reads as a special token")

    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "w", encoding="utf-8") as f:
            f.write(text)
        ref_path = os.path.join(tmp, "ref.safetensors")
        subprocess.run([args.go, "run", "./scripts/hf/reference", "--model", args.export, "--text-file", text_path,
                        "--out", ref_path, "--max-tokens", str(args.max_tokens)], check=True)
        ref = load_file(ref_path)
    ids = [int(i) for i in ref["ids"]]
    ref_logits = ref["logits"]
    T = ref_logits.shape[0]

    tok = AutoTokenizer.from_pretrained(args.export)
    check(tok.is_fast, f"AutoTokenizer loads tokenizer.json as a fast tokenizer ({type(tok).__name__})")
    hf_ids = tok(text, add_special_tokens=False)["input_ids"]
    check(hf_ids == ids, f"fast tokenizer ids equal ringtrain's ({len(ids)} ids)")
    check(tok.decode(ids) == text, "fast tokenizer decodes ringtrain's ids to the text")
    if os.path.exists(os.path.join(args.export, "vocab.json")):
        slow = AutoTokenizer.from_pretrained(args.export, use_fast=False)
        check(slow(text, add_special_tokens=False)["input_ids"] == ids,
              f"slow tokenizer ({type(slow).__name__}, vocab.json + merges.txt) ids equal ringtrain's")

    with open(os.path.join(args.export, "config.json")) as f:
        config = json.load(f)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    check(config.get("eos_token_id") == eot == config.get("bos_token_id"),
          f"config.json bos/eos ({config.get('bos_token_id')}, {config.get('eos_token_id')}) are <|endoftext|> = {eot}")
    check(tok.eos_token_id == eot, "the tokenizer's eos_token is <|endoftext|>")

    model = AutoModelForCausalLM.from_pretrained(args.export, torch_dtype=torch.float32)
    model.eval()
    check(model.generation_config.eos_token_id == eot, "generation_config.json's eos_token_id is <|endoftext|>")
    with torch.no_grad():
        logits = model(torch.tensor([ids[:T]])).logits[0].numpy()
    diff = float(np.max(np.abs(logits - ref_logits)))
    check(diff <= args.atol, f"logits of {T} positions: max |transformers - ringtrain| = {diff:.2e} (atol {args.atol})")
    check(bool((logits.argmax(-1) == ref_logits.argmax(-1)).all()), "argmax of every position agrees")

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
