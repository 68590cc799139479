"""Batch processing of a folder: one worker process per file at a time, resumable, failure-isolated.

Progress is recorded in `OUT/.ohmlens-batch.jsonl`, one fsynced line per finished file, so a batch killed
at any moment resumes (`resume=True`) without redoing files whose outputs are complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.document import Document, to_html, to_markdown, write_atomic

MANIFEST = ".ohmlens-batch.jsonl"
FAILURE_LOG = "failures.log"
FORMATS = ("json", "md", "html")
PDF_SUFFIXES = {".pdf"}
ENGINES = ("local", "ray")


class BatchError(ValueError):
    """A batch that cannot start (missing or empty folder, bad options)."""


@dataclass
class FileResult:
    """What happened to one input file."""

    file: str  # path relative to the input folder
    status: str  # "ok", "failed" or "skipped" (done in an earlier run)
    seconds: float = 0.0
    pages: int = 0
    error: str = ""
    outputs: list[str] = field(default_factory=list)


def output_stem(rel: Path) -> Path:
    """Where a file's outputs go, relative to the output folder: its relative path without suffix."""
    return rel.with_suffix("")


def write_outputs(doc: Document, out_dir: Path, stem: Path, formats: tuple[str, ...]) -> list[Path]:
    """Write the document in each format atomically; crop paths become relative to the outputs."""
    base = out_dir / stem
    crops = f"{stem.name}_files"
    for b in doc.blocks:
        if b.image and "/" not in b.image:
            b.image = f"{crops}/{b.image}"
    written = []
    for fmt in formats:
        path = base.with_name(f"{base.name}.{fmt}")
        content = {"json": doc.iter_json, "md": lambda: to_markdown(doc), "html": lambda: to_html(doc)}[fmt]()
        write_atomic(path, content)
        written.append(path)
    return written


def _process(
    path: str,
    out_dir: str,
    rel: str,
    formats: tuple[str, ...],
    password: str | None,
    parse: Callable[..., Document] | None = None,
    circuits: bool = False,
) -> FileResult:
    """Worker: parse one PDF and write its outputs. Never raises: failures come back as results.

    Args:
        parse: replaces `parse_pdf` (same contract); the Ray engine passes one that splits long documents.
        circuits: read schematic blocks into circuits (`parse_pdf`'s option).
    """
    from pipelines.ingest import PdfError, parse_pdf

    start = time.perf_counter()
    stem = output_stem(Path(rel))
    try:
        doc = (parse or parse_pdf)(
            path,
            password=password,
            crops_dir=Path(out_dir) / stem.parent / f"{stem.name}_files",
            circuits=circuits,
        )
        outputs = write_outputs(doc, Path(out_dir), stem, formats)
        return FileResult(
            rel,
            "ok",
            time.perf_counter() - start,
            doc.page_count,
            "; ".join(doc.problems[:3]),
            [str(p.relative_to(out_dir)) for p in outputs],
        )
    except PdfError as exc:
        return FileResult(rel, "failed", time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # an unexpected crash in one file must not stop the batch
        return FileResult(rel, "failed", time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")


def find_inputs(in_dir: Path) -> list[Path]:
    """PDF files under the folder, sorted, relative to it.

    Raises:
        BatchError: the folder does not exist or holds no PDF.
    """
    if not in_dir.is_dir():
        raise BatchError(f"{in_dir}: not a folder")
    files = sorted(p.relative_to(in_dir) for p in in_dir.rglob("*") if p.suffix.lower() in PDF_SUFFIXES and p.is_file())
    if not files:
        raise BatchError(f"{in_dir}: no PDF files found")
    return files


def read_manifest(out_dir: Path) -> dict[str, dict]:
    """The last recorded result for each file; a torn last line (killed mid-write) is ignored."""
    done: dict[str, dict] = {}
    path = out_dir / MANIFEST
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[entry["file"]] = entry
    return done


def _append_manifest(out_dir: Path, result: FileResult, size: int, mtime: float) -> None:
    entry = {**result.__dict__, "size": size, "mtime": mtime}
    with open(out_dir / MANIFEST, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _already_done(entry: dict | None, src: Path, out_dir: Path) -> bool:
    if not entry or entry.get("status") != "ok":
        return False
    st = src.stat()
    if entry.get("size") != st.st_size or entry.get("mtime") != st.st_mtime:
        return False  # the input changed since
    return all((out_dir / o).exists() for o in entry.get("outputs", []))


def run_batch(
    in_dir: Path,
    out_dir: Path,
    *,
    formats: tuple[str, ...] = ("json", "md"),
    workers: int = 1,
    resume: bool = False,
    password: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    circuits: bool = False,
) -> list[FileResult]:
    """Process every PDF under `in_dir` into `out_dir`.

    Args:
        formats: output formats among json, md, html.
        workers: parallel worker processes.
        resume: skip files finished by an earlier run (same size and mtime, outputs present).
        on_start: called once with (files to do, files skipped).
        on_result: called after each file, in completion order.
        engine: "local" (a process pool) or "ray" (Ray tasks; see `pipelines.batch_ray`).
        address: the Ray cluster to join (`host:port` or `auto`); without it the Ray engine starts a local
            Ray instance with `workers` CPUs.
        circuits: read every schematic figure into a circuit (about a second per drawing).

    Raises:
        BatchError: no inputs, bad options, or the Ray engine without ray installed.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise BatchError(f"unknown format {bad[0]!r}: choose from {', '.join(FORMATS)}")
    if workers < 1:
        raise BatchError("--workers must be at least 1")
    if engine not in ENGINES:
        raise BatchError(f"unknown engine {engine!r}: choose from {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise BatchError("--address needs --engine ray")
    if engine == "ray":
        from pipelines import batch_ray

        batch_ray.require_ray()
    files = find_inputs(in_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out_dir) if resume else {}
    if not resume:
        (out_dir / MANIFEST).unlink(missing_ok=True)
    results: list[FileResult] = []
    todo = []
    for rel in files:
        if _already_done(manifest.get(str(rel)), in_dir / rel, out_dir):
            results.append(FileResult(str(rel), "skipped", outputs=manifest[str(rel)]["outputs"]))
        else:
            todo.append(rel)
    if on_start:
        on_start(len(todo), len(results))
    if engine == "ray":
        stream = batch_ray.execute(todo, in_dir, out_dir, formats, workers, password, address, circuits)
    else:
        stream = _execute(todo, in_dir, out_dir, formats, workers, password, circuits)
    for result in stream:
        st = (in_dir / result.file).stat()
        _append_manifest(out_dir, result, st.st_size, st.st_mtime)
        results.append(result)
        if on_result:
            on_result(result)
    failures = [r for r in results if r.status == "failed"]
    write_atomic(out_dir / FAILURE_LOG, "".join(f"{r.file}\t{r.error}\n" for r in failures))
    return results


def _execute(
    todo: list[Path],
    in_dir: Path,
    out_dir: Path,
    formats: tuple[str, ...],
    workers: int,
    password: str | None,
    circuits: bool = False,
) -> Iterator[FileResult]:
    args = [(str(in_dir / rel), str(out_dir), str(rel), formats, password, None, circuits) for rel in todo]
    if workers == 1:
        for a in args:
            yield _process(*a)
        return
    queue = list(args)
    crashes: dict[str, int] = {}
    while queue:
        # A worker that dies (out of memory, a crash in native code) breaks the whole pool: start a new
        # pool, re-queue what was in flight, and fail a file once it was in flight during two crashes.
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: dict[Future, tuple] = {}
            broken = False
            while (queue or pending) and not broken:
                while queue and len(pending) < workers * 2:
                    a = queue.pop(0)
                    pending[pool.submit(_process, *a)] = a
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    a = pending.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        pending[fut] = a
            for a in pending.values():
                crashes[a[2]] = crashes.get(a[2], 0) + 1
                if crashes[a[2]] >= 2:
                    yield FileResult(a[2], "failed", error="worker process crashed while parsing this file")
                else:
                    queue.insert(0, a)
