"""Peak memory of the trainer's per-token log-probs and entropies, forward and
backward, over a micro-batch's logits: computed at once in fp32 (the textbook
way) against ``azr.rl.loss.token_stats`` (fp32 in chunks, recomputed in the
backward pass). Both take the same bf16 logits; the figure is the peak above
them, and the ratio of the two.

On CUDA the peaks come from ``torch.cuda.max_memory_allocated`` in this
process; on the CPU each variant runs in a fresh child process and the peak is
its maximum resident size above the logits.

``python benches/logprob_memory.py [--tokens 2048] [--vocab 151936] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from azr.rl.loss import token_entropy, token_logprobs, token_stats


def _once(variant: str, tokens: int, vocab: int, device: str) -> float:
    """Bytes held at the peak above the inputs, for one forward and backward."""
    torch.manual_seed(0)
    logits = torch.randn(1, tokens, vocab, device=device).to(torch.bfloat16).requires_grad_(True)
    targets = torch.randint(0, vocab, (1, tokens), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if variant == "at_once":
        chosen, entropy = token_logprobs(logits, targets), token_entropy(logits)
    else:
        chosen, entropy = token_stats(logits, targets)
    (chosen.sum() + 0.001 * entropy.sum()).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048, help="positions in the micro-batch")
    ap.add_argument("--vocab", type=int, default=151936, help="vocabulary (Qwen2.5's by default)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.child:
        print(_once(args.child, args.tokens, args.vocab, device))
        return
    peaks = {}
    for variant in ("at_once", "token_stats"):
        if device == "cuda":
            peaks[variant] = _once(variant, args.tokens, args.vocab, device)
        else:
            cmd = [sys.executable, __file__, "--child", variant, "--tokens", str(args.tokens)]
            out = subprocess.run(
                [*cmd, "--vocab", str(args.vocab)], capture_output=True, text=True, check=True
            )
            peaks[variant] = float(out.stdout.strip().splitlines()[-1])
    logits_bytes = 2 * args.tokens * args.vocab
    result = {
        "bench": "logprob_memory",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "tokens": args.tokens,
        "vocab": args.vocab,
        "logits_gb": logits_bytes / 1e9,
        "peak_above_logits_gb": {k: v / 1e9 for k, v in peaks.items()},
        "ratio_at_once_over_token_stats": peaks["at_once"] / peaks["token_stats"],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
