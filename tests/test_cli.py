"""The command line: outputs, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pymupdf
from typer.testing import CliRunner

from app.cli import app
from tests.conftest import REPO

runner = CliRunner()


def test_parse_writes_each_format(tmp_path: Path, text_pdf: Path) -> None:
    ws = ["--workspace", str(tmp_path / "ws")]
    for fmt in ("json", "md", "html"):
        res = runner.invoke(app, [*ws, "parse", str(text_pdf), "--out", str(tmp_path / "o"), "--format", fmt])
        assert res.exit_code == 0, res.output
        assert (tmp_path / "o" / f"text.{fmt}").exists()
    data = json.loads((tmp_path / "o" / "text.json").read_text())
    assert data["source"] == "text.pdf" and data["blocks"]
    res = runner.invoke(app, [*ws, "parse", str(text_pdf), "--out", str(tmp_path / "p"), "--pages", "2"])
    assert res.exit_code == 0
    assert {b["page"] for b in json.loads((tmp_path / "p" / "text.json").read_text())["blocks"]} == {2}


def test_bad_file_gives_one_line_error_and_exit_1(tmp_path: Path, bad_inputs: dict[str, Path]) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "--workspace",
            str(tmp_path / "ws"),
            "parse",
            str(bad_inputs["png"]),
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == ["error: image.pdf: not a PDF (no %PDF header)"]
    assert "Traceback" not in res.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no PDF files" in res.output
    res = runner.invoke(app, ["parse", "x.pdf", "--format", "docx"])
    assert res.exit_code == 2


def test_batch_exit_code_1_when_a_file_fails(tmp_path: Path, text_pdf: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.pdf").write_bytes(text_pdf.read_bytes())
    (src / "bad.pdf").write_bytes(b"not a pdf")
    res = runner.invoke(app, ["batch", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "1 files failed" in res.output and (tmp_path / "o" / "good.json").exists()


def test_batch_and_parse_read_circuits_when_asked(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with pymupdf.open(Path(__file__).resolve().parents[1] / "samples" / "datasheet-small.pdf") as sample:
        first = pymupdf.open()
        first.insert_pdf(sample, to_page=0)  # page 1 holds a typical application schematic
        first.save(src / "page1.pdf")
    res = runner.invoke(
        app, ["--workspace", str(tmp_path / "ws"), "batch", str(src), "--out", str(tmp_path / "o"), "--circuits"]
    )
    assert res.exit_code == 0, res.output
    blocks = json.loads((tmp_path / "o" / "page1.json").read_text())["blocks"]
    (schematic,) = [b for b in blocks if b["kind"] == "schematic"]
    assert len(schematic["circuit"]["components"]) >= 5
    res = runner.invoke(
        app, ["--workspace", str(tmp_path / "ws"), "parse", str(src / "page1.pdf"), "--out", str(tmp_path / "p")]
    )
    assert "circuits" not in res.output  # off unless asked
    blocks = json.loads((tmp_path / "p" / "page1.json").read_text())["blocks"]
    assert all(b["circuit"] is None for b in blocks)
