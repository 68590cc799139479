"""Long-document pass: latent-cache size, time to first token with and without the saved cache, semantic links.

Usage: python tests/benchmarks/bench_longdoc.py [--lm PATH] [--pages 120] [--seed 0] [--preset small]
                                                [--questions 5] [--max-windows 0]

On the synthetic datasheet's gold document (its block ids are the ones the implicit-link truth names):
1. Tokens per page with the model's tokenizer; cache bytes per token and per 100 pages for the MLA latent cache
   against a standard multi-head KV cache of the same model (bf16), and the measured size of the saved file.
2. The pass over the whole document (window by window when it is longer than the model's positions), timed.
3. Time to first token on CPU for a few questions: from the saved cache vs re-encoding the question's window.
4. Semantic links (paragraphs that discuss a table/figure without naming it) proposed from the pass's block
   vectors against a MiniLM-similarity baseline, both scored on the truth's implicit links (best threshold of
   each, reported side by side). The pass's links are kept only if they beat the baseline.
Weights: `--lm PATH`, else the project's trained ones (lm/weights/small), else random weights of `--preset`
(said so in the results). Writes tests/benchmarks/results/longdoc.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))

from eval_qa import datasheet  # noqa: E402

from lm.tokenizer import Tokenizer  # noqa: E402
from pipelines.document import Document  # noqa: E402
from pipelines.longdoc import (  # noqa: E402
    PROJECT_WEIGHTS,
    LongDocPass,
    block_text,
    cache_bytes_per_token,
    load_lm,
    random_lm,
    semantic_links,
)
from pipelines.retrieval import Embedder  # noqa: E402
from pipelines.store import Workspace  # noqa: E402

RESULTS = REPO / "tests" / "benchmarks" / "results"


def score_links(proposed: list, truth: set[tuple[str, str]]) -> dict:
    got = {(lk.source, lk.target) for lk in proposed}
    tp = len(got & truth)
    p = tp / len(got) if got else 0.0
    r = tp / len(truth) if truth else 0.0
    return {
        "proposed": len(got),
        "correct": tp,
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
    }


def best_threshold(doc: Document, vectors: dict, truth: set, method: str) -> dict:
    sims = []
    for t in [x / 100 for x in range(0, 100, 2)]:
        s = score_links(semantic_links(doc, vectors, t, method), truth)
        sims.append({**s, "threshold": t})
    return max(sims, key=lambda s: (s["f1"], s["precision"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lm", default=None, help="Hugging Face DeepSeek-format checkpoint folder")
    ap.add_argument("--pages", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="small", help="preset for random weights when no checkpoint exists")
    ap.add_argument("--questions", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    _pdf, truth = datasheet(args.pages, args.seed)
    doc = Document.from_dict(truth)
    if args.lm or (PROJECT_WEIGHTS / "config.json").is_file():
        lm = load_lm(args.lm)
        weights = f"trained checkpoint {lm.source}"
    else:
        tok_path = PROJECT_WEIGHTS / "tokenizer.json"
        if tok_path.is_file():
            tokenizer = Tokenizer.load(tok_path)
        else:
            tokenizer = Tokenizer.train([t for _, t in block_text(doc)], vocab_size=8192)
        lm = random_lm(args.preset, tokenizer)
        weights = f"random weights, preset {args.preset} (no trained checkpoint found)"
    print(f"weights: {weights}; {lm.model.config.num_parameters() / 1e6:.1f} M parameters", flush=True)

    ws = Workspace(tempfile.mkdtemp(prefix="ohmlens-longdoc-"))
    ws.add(doc)
    runner = LongDocPass(ws, lm)
    result = runner.run(doc)
    per_token = cache_bytes_per_token(lm, dtype_bytes=2)
    tokens_per_page = result.tokens / doc.page_count
    file_bytes = runner.cache_path(doc.id).stat().st_size
    print(f"pass: {result.tokens} tokens in {len(result.windows)} window(s), {result.seconds:.1f} s", flush=True)

    rng = random.Random(args.seed)
    blocks = [b for b in doc.blocks if b.kind in ("paragraph", "caption") and b.id in result.block_vectors]
    questions = [
        "What is the maximum input voltage?",
        "Which figure shows the pin-out?",
        "What is the reset value of CTRL1?",
        "and at 85 °C?",
        "How is the soft-start time set?",
    ]
    with_cache, without = [], []
    for q, b in zip(questions[: args.questions], rng.sample(blocks, args.questions), strict=False):
        tok_a, t_a = runner.first_token(doc, q, use_cache=True, block_id=b.id)
        tok_b, t_b = runner.first_token(doc, q, use_cache=False, block_id=b.id)
        assert tok_a == tok_b, "the cached and re-encoded first tokens differ"
        with_cache.append(t_a)
        without.append(t_b)
    ttft_cached, ttft_fresh = statistics.median(with_cache), statistics.median(without)
    window_tokens = statistics.median(len(w.ids) for w in result.windows)
    print(f"TTFT: cached {ttft_cached * 1000:.0f} ms, re-encoding {ttft_fresh * 1000:.0f} ms", flush=True)

    implicit = {(x["source"], x["target"]) for x in truth["truth"]["implicit_links"]}
    lm_best = best_threshold(doc, result.block_vectors, implicit, "lm")
    texts = dict(block_text(doc))
    ids = [bid for bid in texts if bid in result.block_vectors or doc.block(bid).kind == "caption"]
    start = time.perf_counter()
    emb = Embedder().encode([texts[i] for i in ids])
    minilm_s = time.perf_counter() - start
    minilm_vectors = dict(zip(ids, emb, strict=True))
    base_best = best_threshold(doc, minilm_vectors, implicit, "minilm")
    kept = lm_best["f1"] > base_best["f1"]
    print(f"semantic links: pass {lm_best}, MiniLM {base_best}, kept: {kept}", flush=True)

    out = {
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f})",
        "weights": weights,
        "model": {
            "parameters_M": round(lm.model.config.num_parameters() / 1e6, 1),
            "max_positions": lm.max_tokens,
            "layers": lm.model.config.num_hidden_layers,
        },
        "document": {
            "name": truth["source"],
            "pages": doc.page_count,
            "tokens": result.tokens,
            "tokens_per_page": round(tokens_per_page, 1),
            "windows": len(result.windows),
        },
        "cache": {
            "bytes_per_token_bf16": per_token,
            "per_100_pages_MB_bf16": {k: round(v * tokens_per_page * 100 / 1e6, 2) for k, v in per_token.items()},
            "ratio_standard_over_mla": round(per_token["standard_kv"] / per_token["mla_latent"], 2),
            "saved_file_bytes_fp32": file_bytes,
            "saved_file_bytes_per_token": round(file_bytes / result.tokens, 1),
        },
        "pass_seconds": round(result.seconds, 2),
        "ttft": {
            "questions": len(with_cache),
            "window_tokens_median": window_tokens,
            "cached_ms_median": round(ttft_cached * 1000, 1),
            "reencode_ms_median": round(ttft_fresh * 1000, 1),
            "speedup": round(ttft_fresh / ttft_cached, 1),
        },
        "semantic_links": {
            "truth_links": len(implicit),
            "pass": lm_best,
            "minilm_baseline": base_best,
            "pass_links_kept": kept,
            "minilm_encode_s": round(minilm_s, 2),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "longdoc.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
