"""Shared fixtures: small PDFs built with PyMuPDF, and the location of the real data sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

try:  # only the PDF fixtures need PyMuPDF: machines without it (the GPU box) still collect and run the rest
    import pymupdf
except ImportError:
    pymupdf = None

REPO = Path(__file__).resolve().parents[1]

SHARED_DATA = REPO.parent / "shared" / "data"

LOREM = (
    "The regulator accepts input voltages from 2.7 V to 5.5 V and delivers up to 600 mA of load current "
    "with a typical quiescent current of 35 uA. Output accuracy is 1.5 percent over temperature."
)


def requires_data(sub: str) -> Path:
    """The real data folder, or skip the test with the reason."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real data set {sub} not found at {path}")
    return path


def _header_footer(page: pymupdf.Page, number: int) -> None:
    page.insert_text((72, 40), "TPS999 Step-Down Converter Datasheet", fontsize=8)
    page.insert_text((290, 770), f"{number}", fontsize=8)


def build_text_pdf(path: Path, pages: int = 3) -> Path:
    """Headings at two levels, paragraphs, a bulleted list, a caption and running header/footer."""
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page()
        _header_footer(page, n)
        y = 90
        page.insert_text((72, y), f"{n} Section Number {n}", fontsize=16, fontname="hebo")
        y += 30
        page.insert_textbox(pymupdf.Rect(72, y, 540, y + 60), LOREM, fontsize=10)
        y += 75
        page.insert_text((72, y), f"{n}.1 Details of part {n}", fontsize=12, fontname="hebo")
        y += 20
        page.insert_textbox(pymupdf.Rect(72, y, 540, y + 60), LOREM, fontsize=10)
        y += 70
        for item in ("first point of the list", "second point of the list"):
            page.insert_text((80, y), f"• {item}", fontsize=10)
            y += 16
        y += 10
        page.insert_text((72, y), f"Figure {n}. Typical application circuit", fontsize=9)
    doc.set_toc([[1, f"{n} Section Number {n}", n] for n in range(1, pages + 1)])
    doc.save(path)
    return path


def build_two_column_pdf(path: Path) -> Path:
    """One page: a full-width title, then two columns of three paragraphs each."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 60), "Two Column Application Note", fontsize=18, fontname="hebo")
    for col, x in enumerate((50, 320)):
        for i in range(3):
            text = f"Column {col + 1} paragraph {i + 1}. " + LOREM
            page.insert_textbox(pymupdf.Rect(x, 100 + i * 150, x + 240, 100 + i * 150 + 130), text, fontsize=10)
    doc.save(path)
    return path


def build_scanned_pdf(path: Path) -> Path:
    """One image-only page: text rendered to a picture, no text layer."""
    src = pymupdf.open()
    page = src.new_page()
    page.insert_text((72, 100), "MAXIMUM SUPPLY VOLTAGE 6 V", fontsize=20)
    page.insert_text((72, 160), "Operating temperature range", fontsize=20)
    pix = page.get_pixmap(dpi=150)
    doc = pymupdf.open()
    out = doc.new_page()
    out.insert_image(out.rect, pixmap=pix)
    doc.save(path)
    return path


@pytest.fixture
def text_pdf(tmp_path: Path) -> Path:
    return build_text_pdf(tmp_path / "text.pdf")


@pytest.fixture
def two_column_pdf(tmp_path: Path) -> Path:
    return build_two_column_pdf(tmp_path / "twocol.pdf")


@pytest.fixture
def scanned_pdf(tmp_path: Path) -> Path:
    return build_scanned_pdf(tmp_path / "scan.pdf")


@pytest.fixture
def bad_inputs(tmp_path: Path, text_pdf: Path) -> dict[str, Path]:
    """Files a user might feed by mistake, keyed by what is wrong with them."""
    png = tmp_path / "image.pdf"
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 10, 10), 0)
    png.write_bytes(pix.tobytes("png"))
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(text_pdf.read_bytes()[:300])
    encrypted = tmp_path / "encrypted.pdf"
    doc = pymupdf.open(text_pdf)
    doc.save(encrypted, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="secret")
    empty_pages = tmp_path / "nopages.pdf"
    empty_pages.write_bytes(
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )
    zero = tmp_path / "zero.pdf"
    zero.write_bytes(b"")
    return {"png": png, "truncated": truncated, "encrypted": encrypted, "no_pages": empty_pages, "zero": zero}


CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ui_url(tmp_path_factory: pytest.TempPathFactory):
    """Start `ohmlens serve` on a free local port with a fresh workspace; yield its URL."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    workspace = tmp_path_factory.mktemp("ui-workspace")
    log = open(workspace / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--workspace", str(workspace), "serve", "--port", str(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ohmlens serve exited: {(workspace / 'server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("ohmlens serve did not answer within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@contextmanager
def chromium_page(url: str, height: int = 1000) -> Iterator:
    """A Playwright page in Debian's headless Chromium, opened on `url`; skips when either is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed (/usr/bin/chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.goto(url)
        yield page
        browser.close()


@pytest.fixture
def browser_page(ui_url: str):
    """The whole UI (`ohmlens serve`) in Chromium."""
    with chromium_page(ui_url) as page:
        yield page


@contextmanager
def serve_tab(title: str, build: Callable[[], object]) -> Iterator[str]:
    """Serve one tab of the UI on a free local port in this process; yield its URL."""
    import gradio as gr

    with gr.Blocks() as demo:
        with gr.Tab(title):
            build()
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


ARTIFACTS = REPO / "test-artifacts"  # screenshots from browser tests (ignored by git)


def run_interpreted(module: str) -> dict:
    """``module._run_cases()`` in a child process under Triton's CPU interpreter (chosen before Triton is first
    imported, which this process has done), returning what it printed as JSON."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    code = f"import json, {module} as t; print(json.dumps(t._run_cases()))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
