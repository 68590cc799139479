"""Ray batch engine: a real two-node Ray cluster on this machine, outputs equal to the local engine's, faults.

The cluster is a head (`ray start --head`, 1 CPU) plus a second node process (`ray start --address`, 1 CPU),
both on 127.0.0.1 and started once for the module (Ray takes ~15 s to come up on two cores).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymupdf
import pytest

from pipelines import batch_ray
from pipelines.batch import FAILURE_LOG, MANIFEST, BatchError, read_manifest, run_batch
from tests.conftest import _free_port, build_text_pdf

RAY_BIN = Path(sys.executable).with_name("ray")


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    cmd = [str(RAY_BIN), "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1", "--block"]
    cmd += ["--disable-usage-stats", f"--metrics-export-port={_free_port()}"]
    cmd += [f"--dashboard-agent-listen-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]
    # Own session: the test ends the node by its process id and never touches anyone else's Ray.
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(predicate, what: str, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout:.0f} s; log tail:\n{log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)  # `ray start --block` drains and stops the processes it started
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A head and a second node on 127.0.0.1, with this test process connected as the driver.

    Token authentication is on with a fresh secret shared through the environment (nodes and driver), so the
    test neither depends on nor writes a token file in the home folder.
    """
    auth = pytest.MonkeyPatch()
    auth.setenv("RAY_AUTH_MODE", "token")
    auth.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ohmlens[ray]')")
    if not RAY_BIN.exists():
        pytest.skip(f"the ray command is not beside {sys.executable}")
    logs = tmp_path_factory.mktemp("ray-logs")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head_args = ["--head", f"--port={port}", "--include-dashboard=false", f"--ray-client-server-port={_free_port()}"]
    head = _start_node(head_args, logs / "head.log")
    nodes = [head]
    try:
        _wait_for(lambda: "Ray runtime started" in (logs / "head.log").read_text(), "head up", logs / "head.log")
        nodes.append(_start_node([f"--address={address}"], logs / "node.log"))
        ray.init(address=address, log_to_driver=False)
        _wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, "second node joined", logs / "node.log")
        yield {"address": address, "ray": ray, "pgids": {p.pid for p in nodes}}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(nodes):
            _stop(proc)
        auth.undo()
        # `ray start` records the head for later `ray.init()` calls; a stopped cluster must not stay recorded.
        marker = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if marker.exists() and marker.read_text().strip().endswith(f":{port}"):
            marker.unlink()


def _build_pdf(path: Path, text_pages: int) -> Path:
    """`text_pages` text pages (the first with a schematic-like vector drawing and a raster image), then a ruled
    table that fills the bottom of one page and continues at the top of the next (two more pages).
    """
    doc = pymupdf.open(build_text_pdf(path.with_suffix(".base"), text_pages))
    art = doc[0]
    for i in range(8):  # a resistor zig-zag between two wires, a capacitor, a ground
        art.draw_line((300 + 8 * i, 640 + (i % 2) * 12), (308 + 8 * i, 640 + ((i + 1) % 2) * 12))
    art.draw_line((240, 646), (300, 646))
    art.draw_line((364, 646), (420, 646))
    art.draw_line((420, 600), (420, 700))
    art.draw_rect(pymupdf.Rect(410, 700, 430, 704))
    art.insert_text((300, 630), "R1 10 kΩ", fontsize=8)
    art.insert_text((430, 660), "C1 100 nF", fontsize=8)
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 48), 0)
    pix.set_rect(pix.irect, (200, 40, 40))
    art.insert_image(pymupdf.Rect(72, 600, 200, 700), pixmap=pix)
    for first_row, n_rows, y0 in ((0, 36, 110), (36, 10, 60)):
        page = doc.new_page()
        if first_row == 0:
            page.insert_text((72, 90), "Table 2. Electrical characteristics", fontsize=9)
        for k in range(n_rows):
            r, y = first_row + k, y0 + k * 18
            for c in range(3):
                rect = pymupdf.Rect(72 + c * 150, y, 222 + c * 150, y + 18)
                page.draw_rect(rect, width=0.6)
                text = ("Parameter", "Min", "Max")[c] if r == 0 else f"V{r}" if c == 0 else f"{r * c}.0"
                page.insert_text((rect.x0 + 3, rect.y1 - 5), text, fontsize=8)
    doc.save(path)
    doc.close()
    path.with_suffix(".base").unlink()
    return path


def _inputs(root: Path, text_pages: list[int]) -> Path:
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    for i, n in enumerate(text_pages):
        _build_pdf(src / ("sub" if i % 2 else ".") / f"doc{i}.pdf", n)
    (src / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    return src


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST}


def _assert_same_outputs(local: Path, ray_out: Path, src: Path) -> None:
    """Same files with the same bytes; the manifest holds every input exactly once with the same record."""
    a, b = _tree(local), _tree(ray_out)
    assert sorted(a) == sorted(b)
    log_a, log_b = a.pop(FAILURE_LOG), b.pop(FAILURE_LOG)
    assert sorted(log_a.splitlines()) == sorted(log_b.splitlines())  # results arrive in completion order
    assert [k for k in a if a[k] != b[k]] == []
    lines = [json.loads(x) for x in (ray_out / MANIFEST).read_text().splitlines()]
    assert sorted(e["file"] for e in lines) == sorted(str(p.relative_to(src)) for p in src.rglob("*.pdf"))
    want = read_manifest(local)
    for e in lines:
        assert {k: v for k, v in e.items() if k != "seconds"} == {
            k: v for k, v in want[e["file"]].items() if k != "seconds"
        }


def test_page_ranges_cover_every_page_once() -> None:
    for count, size in [(1, 100), (100, 100), (101, 100), (250, 100), (7, 2)]:
        ranges = batch_ray.page_ranges(count, size)
        assert [p for r in ranges for p in r] == list(range(1, count + 1))
        assert max(map(len, ranges)) <= size and len(ranges) == -(-count // size)
        assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_missing_ray_is_a_one_line_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    build_text_pdf(tmp_path / "a.pdf", 1)
    with pytest.raises(BatchError, match=r"pip install 'ohmlens\[ray\]'") as info:
        run_batch(tmp_path, tmp_path / "out", engine="ray")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(BatchError, match="--address needs --engine ray"):
        run_batch(tmp_path, tmp_path / "out", address="127.0.0.1:6379")
    with pytest.raises(BatchError, match="unknown engine"):
        run_batch(tmp_path, tmp_path / "out", engine="spark")


def test_ray_outputs_equal_local_and_split_documents_merge(
    ray_cluster: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _inputs(tmp_path, [1, 7, 2])  # 3, 9 and 4 pages
    formats = ("json", "md", "html")
    local = run_batch(src, tmp_path / "local", formats=formats)
    monkeypatch.setattr(batch_ray, "PART_PAGES", 3)  # doc1: pages 1-3, 4-6, 7-9 (its table: 8-9); doc2: 1-2, 3-4
    results = run_batch(src, tmp_path / "ray", formats=formats, engine="ray", address=ray_cluster["address"])
    assert sorted((r.file, r.status) for r in results) == sorted((r.file, r.status) for r in local)
    assert {r.status for r in local} == {"ok", "failed"}
    doc1 = json.loads((tmp_path / "ray" / "sub" / "doc1.json").read_text())
    assert {b["page"] for b in doc1["blocks"]} == set(range(1, 10))
    assert {b["page"] for b in doc1["blocks"] if b["kind"] == "table"} == {8, 9}, "the split table was not found"
    assert any(b.get("image") for b in doc1["blocks"]), "no figure crop to compare"
    _assert_same_outputs(tmp_path / "local", tmp_path / "ray", src)
    again = run_batch(src, tmp_path / "ray", formats=formats, engine="ray", address=ray_cluster["address"], resume=True)
    assert sorted(r.status for r in again) == ["failed", "skipped", "skipped", "skipped"]


def _task_workers(name: str, pgids: set[int]) -> list[int]:
    """Ray worker processes of our cluster now running task `name` (Ray titles them `ray::name`)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if title.startswith(f"ray::{name}") and os.getpgid(parent) in pgids:  # parent: our raylet
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.slow
def test_killed_workers_lose_nothing_and_duplicate_nothing(
    ray_cluster: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _inputs(tmp_path, [100, 100, 60, 100])
    local = run_batch(src, tmp_path / "local")
    monkeypatch.setattr(batch_ray, "PART_PAGES", 16)  # doc2 (62 pages) runs as four part tasks
    out = tmp_path / "ray"
    results: list = []
    runner = threading.Thread(
        target=lambda: results.extend(run_batch(src, out, engine="ray", address=ray_cluster["address"]))
    )
    runner.start()
    killed: set[str] = set()
    while runner.is_alive() and len(killed) < 2:
        for name in {"parse_part", "process_document"} - killed:
            victims = _task_workers(name, ray_cluster["pgids"])
            if victims:
                os.kill(victims[0], signal.SIGKILL)
                killed.add(name)
        time.sleep(0.01)
    runner.join(timeout=180)
    assert not runner.is_alive()
    assert killed == {"parse_part", "process_document"}, f"only killed {killed}: the tasks ended too soon"
    assert sorted((r.file, r.status) for r in results) == sorted((r.file, r.status) for r in local)
    _assert_same_outputs(tmp_path / "local", out, src)
