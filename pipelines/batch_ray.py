"""Ray engine for `pipelines.batch.run_batch`: the same stages as the local engine, run as Ray tasks.

One Ray task per document. The driver reads each input and ships its bytes through the object store, so the
cluster's nodes need the package but not the driver's disk; the task parses the document in a scratch folder
and returns every output file (documents and figure crops) as bytes, and the driver writes them atomically into
the output folder and appends the manifest line. Only the driver writes, so a task that Ray re-runs after its
worker died cannot leave a file done twice.

A document longer than `PART_PAGES` pages is split: its task sends page ranges to sub-tasks, which run the page
pass (`pipelines.ingest.parse_page`) and return blocks with the font evidence each page gave. Block ids are
`p{page}-b{i}`, so the parts concatenate without renumbering; the layout stages (running headers, heading
levels) and `default_stages()` (split tables, links) then run once over the whole document, exactly as
`parse_pdf` runs them, so a split document's outputs equal an unsplit parse's.

A worker that dies (killed, out of memory, a crash in native code) costs only its task: Ray runs it again, and a
document whose worker died twice fails with the same message as in the local engine.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

from pipelines.batch import BatchError, FileResult, _process
from pipelines.document import Block, Document, write_atomic

PART_PAGES = 100  # a longer document is split into parts of at most this many pages
CRASH_RETRIES = 1  # a task is re-run once after its worker dies; a second death fails the document
RAY_MISSING = "the Ray engine needs ray: pip install 'ohmlens[ray]' (or pip install 'ray[default]')"
CRASHED = "worker process crashed while parsing this file"


def require_ray() -> Any:
    """The `ray` module.

    Raises:
        BatchError: ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError:
        raise BatchError(RAY_MISSING) from None
    return ray


@dataclass
class _Part:
    """The page pass over one page range: blocks, their font evidence by block id, OCRed pages, page errors."""

    blocks: list[Block]
    styles: dict[str, Any]  # block id -> pipelines.ingest._Style
    ocr_pages: list[int]
    problems: list[str]
    crops: dict[str, bytes] = field(default_factory=dict)  # crop file name -> PNG


@dataclass
class _Outcome:
    """What a document task returns: the result and every output file, by path relative to the output folder."""

    result: FileResult
    files: dict[str, bytes]


def _scratch_copy(data: bytes, name: str, folder: Path) -> Path:
    # Parse under the original file name: the document's `source` is the name, its id the bytes' hash.
    path = folder / "in" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def parse_part(
    data: bytes, name: str, pages: list[int], doc_id: str, password: str | None, circuits: bool = False
) -> _Part:
    """Page pass over `pages` of one PDF (the loop of `parse_pdf`), keeping what the layout stages need."""
    from pipelines.ingest import ParseOptions, open_pdf, parse_page

    with tempfile.TemporaryDirectory(prefix="ohmlens-part-") as tmp:
        path = _scratch_copy(data, name, Path(tmp))
        crops_dir = Path(tmp) / "crops"
        options = ParseOptions(pages=pages, password=password, crops_dir=crops_dir, circuits=circuits)
        styles: dict[int, Any] = {}
        part = _Part([], {}, [], [])
        pdf = open_pdf(path, password)
        try:
            for number in pages:
                try:
                    blocks = parse_page(pdf.load_page(number - 1), number, doc_id, options, styles)
                    part.blocks += blocks
                    if any(b.ocr for b in blocks):
                        part.ocr_pages.append(number)
                except Exception as exc:  # one broken page never fails the document
                    part.problems.append(f"page {number}: {type(exc).__name__}: {exc}")
        finally:
            pdf.close()
        part.styles = {b.id: styles[id(b)] for b in part.blocks if id(b) in styles}
        if crops_dir.is_dir():
            part.crops = {p.name: p.read_bytes() for p in sorted(crops_dir.iterdir())}
    return part


def merge_parts(path: Path, parts: list[_Part], password: str | None, crops_dir: Path | None) -> Document:
    """One document from its page-range parts (in page order), finished as `parse_pdf` finishes it."""
    from pipelines.ingest import finish_document, new_document, open_pdf

    pdf = open_pdf(path, password)
    try:
        doc = new_document(path, pdf, list(range(1, pdf.page_count + 1)))
        toc = pdf.get_toc(simple=True)
    finally:
        pdf.close()
    styles: dict[int, Any] = {}
    ocr_pages: list[int] = []
    for part in parts:
        doc.blocks += part.blocks
        styles.update({id(b): part.styles[b.id] for b in part.blocks if b.id in part.styles})
        ocr_pages += part.ocr_pages
        doc.problems += part.problems
        if crops_dir is not None:
            for crop, png in part.crops.items():
                write_atomic(crops_dir / crop, png)
    doc.metadata["ocr_pages"] = ocr_pages
    return finish_document(doc, styles, toc)


def page_ranges(page_count: int, part_pages: int) -> list[list[int]]:
    """Split 1..page_count into the fewest near-equal consecutive ranges of at most `part_pages` pages."""
    n = max(1, math.ceil(page_count / part_pages))
    bounds = [round(i * page_count / n) for i in range(n + 1)]
    return [list(range(lo + 1, hi + 1)) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def _page_count(path: Path, password: str | None) -> int:
    from pipelines.ingest import PdfError, open_pdf

    try:
        pdf = open_pdf(path, password)
    except PdfError:
        return 0  # the document task reports it exactly as the local engine does
    try:
        return pdf.page_count
    finally:
        pdf.close()


def _parse_split(
    data_ref: Any,
    ranges: list[list[int]],
    path: str | Path,
    *,
    password: str | None,
    crops_dir: Path | None,
    circuits: bool = False,
) -> Document:
    """`parse_pdf`'s contract, with the page pass spread over Ray tasks (one per page range)."""
    from pipelines.ingest import file_sha256

    ray = require_ray()
    path = Path(path)
    doc_id = file_sha256(path)
    refs = [_remote(parse_part).remote(data_ref, path.name, pages, doc_id, password, circuits) for pages in ranges]
    return merge_parts(path, ray.get(refs), password, crops_dir)


def process_document(
    boxed_ref: list[Any],
    rel: str,
    source: str,
    formats: tuple[str, ...],
    password: str | None,
    part_pages: int,
    circuits: bool = False,
) -> _Outcome:
    """Ray task: parse one document (split by page ranges when long) and return its outputs. Never raises.

    Args:
        boxed_ref: the object reference of the file's bytes inside a list, so that Ray passes the reference
            itself and the part tasks of a split document share one copy.
        rel: the file's path relative to the input folder.
        source: the file's path on the driver, quoted in error messages instead of the scratch copy's.
    """
    ray = require_ray()
    data_ref = boxed_ref[0]
    data = ray.get(data_ref)
    with tempfile.TemporaryDirectory(prefix="ohmlens-doc-") as tmp:
        path = _scratch_copy(data, Path(rel).name, Path(tmp))
        out = Path(tmp) / "out"
        ranges = page_ranges(_page_count(path, password), part_pages)
        parse = partial(_parse_split, data_ref, ranges) if len(ranges) > 1 else None
        result = _process(str(path), str(out), rel, formats, password, parse=parse, circuits=circuits)
        result.error = result.error.replace(str(path), source)
        # Crops first, documents last: a document on disk means its crops are there too.
        files = sorted(
            (p for p in out.rglob("*") if p.is_file()), key=lambda p: str(p.relative_to(out)) in result.outputs
        )
        return _Outcome(result, {str(p.relative_to(out)): p.read_bytes() for p in files})


@cache
def _remote(fn: Any) -> Any:
    """`fn` as a Ray remote function (built once per process: exporting a function costs a round trip)."""
    return require_ray().remote(num_cpus=1, max_retries=CRASH_RETRIES)(fn)


def _connect(ray: Any, address: str | None, workers: int) -> bool:
    """Join the cluster at `address`, or start a local Ray with `workers` CPUs; True when this call started it."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}  # keep the CLI's progress output clean
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # "local": never join a cluster some other run left behind
            ray.init(
                address="local", num_cpus=workers, include_dashboard=False, **quiet
            )  # "local": never join a cluster left running
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise BatchError(f"cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
    return True


def execute(
    todo: list[Path],
    in_dir: Path,
    out_dir: Path,
    formats: tuple[str, ...],
    workers: int,
    password: str | None,
    address: str | None = None,
    circuits: bool = False,
) -> Iterator[FileResult]:
    """Run the documents as Ray tasks; yield results in completion order after writing their outputs.

    Args:
        todo: input files relative to `in_dir`.
        workers: CPUs of the local Ray instance started when no `address` is given.
        address: a running cluster (`host:port` or `auto`); its CPUs decide the parallelism.

    Raises:
        BatchError: ray is missing, or the cluster cannot be reached.
    """
    ray = require_ray()
    started = _connect(ray, address, workers)
    try:
        window = 2 * max(workers, int(ray.cluster_resources().get("CPU", 1)))  # keep every CPU fed
        task = _remote(process_document)
        queue = list(todo)
        pending: dict[Any, str] = {}
        while queue or pending:
            while queue and len(pending) < window:
                rel = queue.pop(0)
                start = time.perf_counter()
                try:
                    data_ref = ray.put((in_dir / rel).read_bytes())
                except OSError as exc:
                    yield FileResult(str(rel), "failed", time.perf_counter() - start, error=f"{rel}: {exc.strerror}")
                    continue
                args = ([data_ref], str(rel), str(in_dir / rel), formats, password, PART_PAGES, circuits)
                pending[task.remote(*args)] = str(rel)
            if not pending:
                continue
            ready, _ = ray.wait(list(pending), num_returns=1)
            rel = pending.pop(ready[0])
            try:
                outcome: _Outcome = ray.get(ready[0])
            except ray.exceptions.RayError:  # the worker died on every attempt
                yield FileResult(rel, "failed", error=CRASHED)
                continue
            for name, content in outcome.files.items():
                write_atomic(out_dir / name, content)
            yield outcome.result
    finally:
        if started:
            ray.shutdown()
