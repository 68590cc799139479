"""Batch processing: failure isolation, failure log, resume after a hard kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.batch import MANIFEST, BatchError, read_manifest, run_batch
from tests.conftest import REPO, build_text_pdf


def _folder(tmp_path: Path, n: int, pages: int = 2) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    first = build_text_pdf(src / "doc0.pdf", pages=pages)
    for i in range(1, n):
        shutil.copy(first, src / ("sub" if i % 2 else ".") / f"doc{i}.pdf")
    return src


def test_bad_file_is_reported_and_batch_goes_on(tmp_path: Path) -> None:
    src = _folder(tmp_path, 3)
    (src / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (src / "picture.pdf").write_bytes(b"\x89PNG\r\n\x1a\n0000")
    out = tmp_path / "out"
    results = run_batch(src, out, formats=("json", "md", "html"), workers=2)
    status = {r.file: r.status for r in results}
    assert status["broken.pdf"] == "failed" and status["picture.pdf"] == "failed"
    assert [s for f, s in status.items() if f.startswith(("doc", "sub"))] == ["ok"] * 3
    assert (out / "sub" / "doc1.json").exists() and (out / "doc0.md").exists() and (out / "doc0.html").exists()
    log = (out / "failures.log").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in log) == ["broken.pdf", "picture.pdf"]
    assert "not a PDF" in next(line for line in log if line.startswith("picture"))


def test_resume_skips_finished_files_and_redoes_changed_ones(tmp_path: Path) -> None:
    src = _folder(tmp_path, 3)
    out = tmp_path / "out"
    run_batch(src, out)
    again = run_batch(src, out, resume=True)
    assert {r.status for r in again} == {"skipped"}
    (out / "doc0.json").unlink()
    again = run_batch(src, out, resume=True)
    assert sorted(r.file for r in again if r.status == "ok") == ["doc0.pdf"]


def test_empty_or_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match="no PDF files"):
        run_batch(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(BatchError, match="not a folder"):
        run_batch(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(BatchError, match="unknown format"):
        run_batch(tmp_path / "empty", tmp_path / "out", formats=("docx",))


def test_resume_after_kill_minus_nine(tmp_path: Path) -> None:
    src = _folder(tmp_path, 12, pages=40)  # two pages parse in a few ms: the whole batch could end between two polls
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "app.cli", "batch", str(src), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(read_manifest(out)) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {f: e for f, e in read_manifest(out).items() if e["status"] == "ok"}
    assert 3 <= len(done_before) < 12, "kill came too late to test resuming"
    mtimes = {f: (out / e["outputs"][0]).stat().st_mtime_ns for f, e in done_before.items()}
    res = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"resuming: {len(done_before)} files already done" in res.stderr
    entries = [json.loads(x) for x in (out / MANIFEST).read_text().splitlines() if x.strip().startswith("{")]
    assert sorted(e["file"] for e in entries) == sorted(str(p.relative_to(src)) for p in src.rglob("*.pdf"))
    assert all((out / e["outputs"][0]).stat().st_mtime_ns == mtimes[f] for f, e in done_before.items())
