"""GPU-path benchmark (runs on vLLM's CPU build too): azr's rollout engine
against raw vLLM generation on the same prompts, and weight sync speed.

    python benches/rollout_bench.py [--model DIR] [--prompts 64] [--n 4] [--max-tokens 128]

Reports, measured in this one process:
- rollout tokens/s: ``vllm.LLM.generate`` alone versus ``VLLMRollout.generate``
  (``Completion`` objects; without log-probs, as the loop asks by default, and
  with them) on the same engine and prompts, alternated over ``--rounds``; the
  framework overhead is ``1 - azr/raw`` (target: at most 10%);
- weight sync: seconds to push the model's full state dict into the engine,
  and seconds per GB, against the same buckets sent through vLLM's RPC channel
  as bytes (what ``load_weights`` did before it handed over files in shared
  memory), alternated over ``--rounds``.
Writes ``benches/results/rollout_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="model.path (default: the tiny model, built locally)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on a GPU, float32 on CPU")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "rollout_bench.json"))
    args = ap.parse_args()

    import torch
    import vllm
    from azr.models import resolve
    from azr.rollout.base import SamplingParams
    from azr.rollout.vllm import VLLMRollout, _buckets
    from transformers import AutoModelForCausalLM

    gpu = torch.cuda.is_available()
    dtype = args.dtype or ("bfloat16" if gpu else "float32")
    path, _ = resolve(args.model)
    engine = VLLMRollout(path, dtype=dtype, gpu_memory_utilization=0.5 if gpu else 0.2, enforce_eager=not gpu)
    prompts = [f"def f{k}(x):\n    # step {k}: return x plus {k}\n    return" for k in range(args.prompts)]
    # As the loop asks (log-probs only for several passes over a batch), and with log-probs.
    params = SamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=0, logprobs=False)
    with_lp = SamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=0, logprobs=True)
    raw_params = vllm.SamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=0)

    def raw() -> int:
        outs = engine.llm.generate(prompts, raw_params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outs for c in o.outputs)

    def ours() -> int:
        return sum(len(c.token_ids) for group in engine.generate(prompts, params) for c in group)

    def ours_lp() -> int:
        return sum(len(c.token_ids) for group in engine.generate(prompts, with_lp) for c in group)

    raw(), ours(), ours_lp()  # warm-up: compilation, caches
    rates: dict[str, list[float]] = {"raw": [], "azr": [], "azr_logprobs": []}
    for _ in range(args.rounds):
        for name, fn in (("raw", raw), ("azr", ours), ("azr_logprobs", ours_lp)):
            engine.llm.reset_prefix_cache()
            start = time.perf_counter()
            tokens = fn()
            rates[name].append(tokens / (time.perf_counter() - start))

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    state = model.state_dict()
    size_gb = sum(t.numel() * t.element_size() for t in state.values()) / 1e9

    def through_rpc() -> None:
        from safetensors.torch import save

        for k, (bucket, _) in enumerate(_buckets(state.items(), 1 << 30)):
            engine.llm.collective_rpc("azr_stage_bytes", args=(save(bucket), k == 0))
        engine.llm.collective_rpc("azr_commit_weights")
        engine.llm.reset_prefix_cache()

    engine.load_weights(state)  # warm-up
    syncs: list[float] = []
    rpc_syncs: list[float] = []
    for _ in range(args.rounds):
        for times, fn in ((syncs, lambda: engine.load_weights(state)), (rpc_syncs, through_rpc)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    raw_rate, azr_rate = statistics.median(rates["raw"]), statistics.median(rates["azr"])
    lp_rate = statistics.median(rates["azr_logprobs"])
    sync, rpc_sync = statistics.median(syncs), statistics.median(rpc_syncs)
    result = {
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "vllm": vllm.__version__,
        "model": args.model,
        "dtype": dtype,
        "prompts": args.prompts,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "raw_tokens_per_s": raw_rate,
        "azr_tokens_per_s": azr_rate,
        "overhead": 1 - azr_rate / raw_rate,
        "azr_logprobs_tokens_per_s": lp_rate,
        "overhead_with_logprobs": 1 - lp_rate / raw_rate,
        "weights_gb": size_gb,
        "sync_s": sync,
        "sync_s_per_gb": sync / size_gb,
        "sync_through_rpc_s": rpc_sync,
        "sync_speedup": rpc_sync / sync,
        "rounds": {**rates, "sync_s": syncs, "sync_through_rpc_s": rpc_syncs},
    }
    engine.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"rollout: raw vLLM {raw_rate:,.0f} tok/s, azr {azr_rate:,.0f} tok/s, "
        f"overhead {100 * result['overhead']:.1f}% ({100 * result['overhead_with_logprobs']:.1f}% with "
        f"log-probs); sync {sync:.3f} s for {size_gb:.3f} GB "
        f"({result['sync_s_per_gb']:.2f} s/GB; {rpc_sync:.3f} s through vLLM's RPC channel, "
        f"{result['sync_speedup']:.1f}x slower)"
    )


if __name__ == "__main__":
    main()
