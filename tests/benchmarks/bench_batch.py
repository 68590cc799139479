"""Batch throughput on the sample datasheets: local engine against the Ray engine, in one run.

Usage: python tests/benchmarks/bench_batch.py [--inputs DIR] [--count 8] [--pages 20] [--workers 2]

The corpus is `--count` synthetic datasheets of about `--pages` pages (samples/make_datasheet.py, seeds 1..count)
plus the 120-page sample, which the Ray engine splits into two page-range tasks; or the PDFs under `--inputs`.
Timed runs, each into a fresh output folder:

1. local engine, 1 worker (the anchor every ratio is against);
2. local engine, `--workers` processes;
3. Ray engine, `--workers` CPUs, end to end: the run starts a local Ray instance and stops it;
4. Ray engine on an already running local Ray instance of `--workers` CPUs (steady state, startup excluded).

Every Ray output tree is compared byte for byte with the local one. Writes tests/benchmarks/results/batch.json
and batch.md, naming the machine and its load (other jobs on a shared machine skew the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipelines.batch import FAILURE_LOG, MANIFEST, run_batch  # noqa: E402

RESULTS = REPO / "tests" / "benchmarks" / "results"


def make_corpus(folder: Path, count: int, pages: int) -> Path:
    """Generate the sample datasheets (seeds 1..count, plus the 120-page seed 0) unless already there."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(pages, seed) for seed in range(1, count + 1)] + [(120, 0)]
    for n, seed in jobs:
        if not any(folder.glob(f"datasheet-{n}p-seed{seed}.pdf")):
            cmd = [sys.executable, "-m", "samples.make_datasheet", "--pages", str(n), "--seed", str(seed)]
            subprocess.run(cmd + ["--out", str(folder)], cwd=REPO, check=True, capture_output=True, timeout=900)
    for truth in folder.glob("*.truth.json"):
        truth.unlink()  # keep only the inputs
    return folder


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST}


def same_outputs(a: Path, b: Path) -> bool:
    """Same files and bytes (the failure log compared as a set of lines: results arrive in completion order)."""
    ta, tb = tree(a), tree(b)
    if sorted(ta) != sorted(tb):
        return False
    logs = sorted(ta.pop(FAILURE_LOG, b"").splitlines()) == sorted(tb.pop(FAILURE_LOG, b"").splitlines())
    return logs and all(ta[k] == tb[k] for k in ta)


def timed(name: str, inputs: Path, out: Path, **kwargs: object) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    results = run_batch(inputs, out, **kwargs)
    seconds = time.perf_counter() - start
    pages = sum(r.pages for r in results)
    row = {
        "run": name,
        "seconds": round(seconds, 2),
        "files": len(results),
        "failed": sum(r.status == "failed" for r in results),
        "pages": pages,
        "files_per_s": round(len(results) / seconds, 3),
        "pages_per_s": round(pages / seconds, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=Path, help="folder of PDFs (default: generate the sample datasheets)")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import ray

    from pipelines import batch_ray

    work = Path(tempfile.mkdtemp(prefix="ohmlens-bench-batch-"))
    corpus = Path(tempfile.gettempdir()) / "ohmlens-bench-batch-corpus"
    w = args.workers
    inputs = args.inputs or make_corpus(corpus, args.count, args.pages)
    load_before = os.getloadavg()
    rows = [timed("local, 1 worker", inputs, work / "local1", workers=1)]
    rows.append(timed(f"local, {w} workers", inputs, work / "local", workers=w))
    rows.append(timed(f"ray, {w} CPUs, incl. start", inputs, work / "ray", engine="ray", workers=w))
    start = time.perf_counter()
    ray.init(address="local", num_cpus=w, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    rows.append(timed(f"ray, {w} CPUs, running", inputs, work / "ray-warm", engine="ray", workers=w))
    ray.shutdown()
    anchor = rows[0]["seconds"]
    for row in rows:
        row["speedup_vs_local_1"] = round(anchor / row["seconds"], 2)
    identical = {name: same_outputs(work / "local1", work / name) for name in ("local", "ray", "ray-warm")}
    result = {
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()})",
        "ray_version": ray.__version__,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "inputs": str(inputs),
        "part_pages": batch_ray.PART_PAGES,
        "ray_local_start_s": round(startup, 2),
        "runs": rows,
        "outputs_identical_to_local_1": identical,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Batch throughput: local engine vs Ray",
        "",
        f"Machine: {result['machine']}; load average before/after: {result['load_average_before']} / "
        f"{result['load_average_after']}; ray {result['ray_version']}; "
        f"Ray local start {result['ray_local_start_s']} s.",
        f"Inputs: {rows[0]['files']} PDFs, {rows[0]['pages']} pages (`{inputs}`).",
        "",
        "| run | seconds | files/s | pages/s | vs local 1 worker |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['run']} | {r['seconds']} | {r['files_per_s']} | {r['pages_per_s']} | {r['speedup_vs_local_1']}x |"
        for r in rows
    ]
    lines += ["", f"Outputs identical to the 1-worker local run: {identical}", ""]
    (RESULTS / "batch.md").write_text("\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
