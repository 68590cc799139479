"""Kernel time of graph-captured decode steps (V2-Lite shapes, random bf16 weights, compiled blocks) by torch.profiler.

    python tests/benchmarks/profile_decode.py --out OUT                  # batch 32 (1k context) and batch 1 (2k)
    python tests/benchmarks/profile_decode.py --out OUT --plain-kernels  # routing/attention by plain PyTorch ops
    python tests/benchmarks/profile_decode.py --out OUT --smoke          # CPU, tiny shapes: exercise the script

Writes ``OUT/profile_b{batch}.txt``: device microseconds per kernel summed over 16 steps, calls, mean per call, and
the step's wall time measured over 32 steps just before; ``OUT/profile.json`` holds the step times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lm import bench_config, build_ours, plain_route_and_attention  # noqa: E402

from lm.generate import CompiledBlocks, Generator  # noqa: E402

STEPS = 16


def kernel_table(prof: profile) -> list[tuple[float, int, str]]:
    """(device µs summed, calls, name) per GPU kernel, longest first."""
    rows = []
    for event in prof.key_averages():
        total = getattr(event, "device_time_total", 0.0)
        if total > 0 and event.device_type.name == "CUDA":
            rows.append((total, event.count, event.key))
    return sorted(rows, reverse=True)


def profile_batch(model, batch: int, ctx: int, new: int, device: str) -> tuple[dict[str, float], list[str]]:  # type: ignore[no-untyped-def]
    cuda = device == "cuda"
    prompts = torch.randint(3, model.config.vocab_size, (batch, ctx)).tolist()
    gen = Generator(model, use_cuda_graphs=cuda, compile_decode=cuda)
    if cuda:
        gen.blocks = CompiledBlocks()
    gen.generate(prompts, max_new_tokens=new, stop_token_ids=[])  # compiles and captures
    result = gen.generate(prompts, max_new_tokens=new, stop_token_ids=[])
    res = {"tok_per_s": batch * new / result.decode_seconds, "step_ms": result.decode_seconds / result.steps * 1e3}
    ws = gen._workspace(batch, ctx + new, False)
    token = torch.randint(3, model.config.vocab_size, (batch, 1), device=device)
    with torch.inference_mode():
        ws.cache.set_lengths([ctx] * batch)  # the same cache lengths, so the same captured graph, as generate's
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(2 * STEPS):
            gen._step(ws, "main", token)
        if cuda:
            torch.cuda.synchronize()
        res["step_loop_ms"] = (time.perf_counter() - t) / (2 * STEPS) * 1e3
        ws.cache.set_lengths([ctx] * batch)
        with profile(activities=[ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]) as prof:
            for _ in range(STEPS):
                gen._step(ws, "main", token)
            if cuda:
                torch.cuda.synchronize()
    rows = kernel_table(prof)
    res["device_us_per_step"] = sum(r[0] for r in rows) / STEPS
    res["kernels_per_step"] = sum(r[1] for r in rows) / STEPS
    lines = [f"batch {batch}, context {ctx}: {json.dumps({k: round(v, 3) for k, v in res.items()})}"]
    lines.append(f"{'us/step':>10} {'calls/step':>10} {'us/call':>8}  kernel")
    lines += [f"{t / STEPS:10.1f} {n / STEPS:10.1f} {t / max(n, 1):8.2f}  {k[:140]}" for t, n, k in rows[:60]]
    return res, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--plain-kernels", action="store_true", help="routing and attention without their Triton kernels")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    model = build_ours(bench_config(args.smoke), device)
    results = {}
    shapes = ((4, 32, 8), (1, 64, 8)) if args.smoke else ((32, 1024, 64), (1, 2048, 64))
    for batch, ctx, new in shapes:
        if args.plain_kernels:
            with plain_route_and_attention():
                results[f"b{batch}"], lines = profile_batch(model, batch, ctx, new, device)
        else:
            results[f"b{batch}"], lines = profile_batch(model, batch, ctx, new, device)
        (args.out / f"profile_b{batch}.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines[:40]), flush=True)
    (args.out / "profile.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
