"""Parse speed and memory, side by side with pymupdf4llm, in one run.

Usage: python tests/benchmarks/bench_parse.py [--pages 120] [--big 2000]

1. The synthetic datasheet (120 pages): ohmlens parse + link + index (into a fresh workspace) against
   `pymupdf4llm.to_markdown` on the same file; wall time and peak RSS of each in its own process.
2. Memory against page count: the same datasheet repeated to `--big` pages, parsed at several lengths;
   peak RSS should stay flat.
Writes tests/benchmarks/results/parse.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "benchmarks" / "results"

CHILD = r"""
import json, resource, sys, time, tempfile
from pathlib import Path
mode, path = sys.argv[1], sys.argv[2]
pages = sys.argv[3] if len(sys.argv) > 3 else None
start = time.perf_counter()
if mode == "ohmlens":
    from pipelines.ingest import parse_pdf
    from pipelines.store import Workspace
    doc = parse_pdf(path, pages=pages)
    parsed = time.perf_counter()
    Workspace(tempfile.mkdtemp()).add(doc)
    extra = {"parse_s": parsed - start, "blocks": len(doc.blocks), "tables": len(doc.tables()),
             "links": sum(1 for l in doc.links if l.target), "problems": len(doc.problems)}
else:
    import pymupdf4llm
    md = pymupdf4llm.to_markdown(path, show_progress=False)
    extra = {"chars": len(md)}
elapsed = time.perf_counter() - start
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime  # kids: the tesseract runs
peak = me.ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": peak, **extra}))
"""


def run_child(mode: str, path: Path, pages: str | None = None) -> dict:
    args = [sys.executable, "-c", CHILD, mode, str(path)] + ([pages] if pages else [])
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def repeat_pdf(src: Path, pages: int, dest: Path) -> Path:
    import pymupdf

    one = pymupdf.open(src)
    big = pymupdf.open()
    while big.page_count < pages:
        big.insert_pdf(one, to_page=min(one.page_count, pages - big.page_count) - 1)
    big.save(dest, garbage=1)
    return dest


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=120)
    ap.add_argument("--big", type=int, default=2000)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from samples.make_datasheet import make_datasheet

    work = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    pdf = make_datasheet(work, pages=args.pages, seed=0)
    ours = run_child("ohmlens", pdf)
    ref = run_child("pymupdf4llm", pdf)
    n = args.pages
    print(f"{n}-page datasheet ({pdf.name}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, r in (("ohmlens parse+link+index", ours), ("pymupdf4llm.to_markdown", ref)):
        print(
            f"  {name:25s} {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU "
            f"({1000 * r['seconds'] / n:.1f} ms/page), peak {r['peak_rss_mb']:.0f} MB"
        )
    wall, cpu = ref["seconds"] / ours["seconds"], ref["cpu_seconds"] / ours["cpu_seconds"]
    print(f"  speed-up {wall:.1f}x wall, {cpu:.1f}x CPU; goals: >= 10x, < 5 s, < 1024 MB")

    big = repeat_pdf(pdf, args.big, work / "big.pdf")
    memory = []
    for length in sorted({args.big // 4, args.big // 2, args.big}):
        r = run_child("ohmlens", big, f"1-{length}")
        memory.append({"pages": length, **r})
        wall, cpu, peak = r["seconds"], r["cpu_seconds"], r["peak_rss_mb"]
        print(f"  {length:5d} pages: {wall:.1f} s wall, {cpu:.1f} s CPU, peak {peak:.0f} MB")
    growth = memory[-1]["peak_rss_mb"] / memory[0]["peak_rss_mb"]
    print(f"  peak memory {args.big} pages / {args.big // 4} pages = {growth:.2f}x")

    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine(),
        "pages": n,
        "ohmlens": ours,
        "pymupdf4llm": ref,
        "load_average": os.getloadavg(),
        "speedup_wall": ref["seconds"] / ours["seconds"],
        "speedup_cpu": ref["cpu_seconds"] / ours["cpu_seconds"],
        "memory_vs_pages": memory,
        "memory_growth": growth,
    }
    (RESULTS / "parse.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
