"""The `ohmlens` command line: thin wrappers over `pipelines`.

Exit codes: 0 ok, 1 some inputs failed, 2 usage error.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table as RichTable

from app.settings import Settings

app = typer.Typer(
    name="ohmlens",
    help="Read electronics documentation: datasheets, schematics and damaged drawings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)
settings = Settings()


class DocFormat(str, Enum):
    json = "json"
    md = "md"
    html = "html"


def _fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def _main(
    workspace: Annotated[Path, typer.Option(help="Workspace folder (database, crops, caches).")] = settings.workspace,
) -> None:
    settings.workspace = workspace


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="PDF files to parse.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("."),
    format: Annotated[DocFormat, typer.Option("--format", "-f", help="Output format.")] = DocFormat.json,
    pages: Annotated[str | None, typer.Option(help="Pages to parse, e.g. 1-20 or 3,5,7-9.")] = None,
    password: Annotated[str | None, typer.Option(help="Password of an encrypted PDF.")] = None,
    store: Annotated[bool, typer.Option(help="Also store the result in the workspace (for ask/chat).")] = True,
    circuits: Annotated[
        bool, typer.Option(help="Read each schematic figure into components and nets (about 1 s per drawing).")
    ] = False,
) -> None:
    """Parse PDFs into structured documents: writes OUT/STEM.json (or .md/.html) per input.

    Example: ohmlens parse datasheet.pdf --out out/ --format md --pages 1-20
    Example: ohmlens parse datasheet.pdf --circuits   (schematic blocks carry their circuits)
    """
    from pipelines.batch import write_outputs
    from pipelines.ingest import PdfError, parse_pdf
    from pipelines.store import Workspace

    failed = 0
    for path in files:
        try:
            with Progress(
                TextColumn(f"{path.name}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
            ) as bar:
                task = bar.add_task("pages", total=None)
                doc = parse_pdf(
                    path,
                    pages=pages,
                    password=password,
                    crops_dir=out / f"{path.stem}_files",
                    progress=lambda done, total, task=task: bar.update(task, completed=done, total=total),
                    circuits=circuits,
                )
            written = write_outputs(doc, out, Path(path.stem), (format.value,))
            if store and not pages:
                Workspace(settings.workspace).add(doc)
        except PdfError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            failed += 1
            continue
        n_tables = len(doc.tables())
        n_links = sum(1 for lk in doc.links if lk.kind == "xref" and lk.target)
        n_circuits = sum(1 for b in doc.blocks if b.circuit is not None and b.circuit.components)
        read = f", {n_circuits} circuits" if circuits else ""
        console.print(
            f"[green]ok[/] {path.name}: {doc.page_count} pages, {len(doc.blocks)} blocks, {n_tables} tables, "
            f"{n_links} links{read} → {written[0]}",
            highlight=False,
        )
        for problem in doc.problems:
            console.print(f"  [yellow]warning:[/] {problem}", highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def batch(
    folder: Annotated[Path, typer.Argument(help="Folder of PDFs (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    workers: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    resume: Annotated[bool, typer.Option(help="Skip files finished by an earlier run.")] = False,
    format: Annotated[str, typer.Option("--format", "-f", help="Comma-separated formats: json,md,html.")] = "json,md",
    password: Annotated[str | None, typer.Option(help="Password for encrypted PDFs.")] = None,
    engine: Annotated[str, typer.Option(help="local (process pool) or ray (a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (host:port or auto).")] = None,
    circuits: Annotated[
        bool, typer.Option(help="Read each schematic figure into components and nets (about 1 s per drawing).")
    ] = False,
) -> None:
    """Parse every PDF in a folder with a progress bar; a bad file is reported and skipped.

    Example: ohmlens batch manuals/ --out out/ --workers 2 --resume
    Example: ohmlens batch manuals/ --out out/ --engine ray --address 127.0.0.1:6379
    """
    from pipelines.batch import BatchError, FileResult, find_inputs, run_batch

    formats = tuple(f.strip() for f in format.split(",") if f.strip())
    try:
        find_inputs(folder)
    except BatchError as exc:
        _fail(str(exc), 2)
    progress = Progress(
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("files", total=None)

    def on_start(todo: int, skipped: int) -> None:
        progress.update(task, total=todo)
        if skipped:
            progress.console.print(f"resuming: {skipped} files already done")

    def on_result(r: FileResult) -> None:
        mark = "[green]ok[/]" if r.status == "ok" else "[red]failed[/]"
        detail = f"{r.pages} pages, {r.seconds:.2f}s" if r.status == "ok" else r.error
        progress.console.print(f"{mark} {r.file}: {detail}", highlight=False)
        progress.advance(task)

    try:
        with progress:
            results = run_batch(
                folder,
                out,
                formats=formats,
                workers=workers,
                resume=resume,
                password=password,
                on_start=on_start,
                on_result=on_result,
                engine=engine,
                address=address,
                circuits=circuits,
            )
    except BatchError as exc:
        _fail(str(exc), 2)
    summary = RichTable(title="batch summary")
    for col in ("status", "files", "pages", "seconds"):
        summary.add_column(col)
    for status in ("ok", "skipped", "failed"):
        rs = [r for r in results if r.status == status]
        summary.add_row(status, str(len(rs)), str(sum(r.pages for r in rs)), f"{sum(r.seconds for r in rs):.1f}")
    console.print(summary)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        console.print(f"{len(failed)} files failed; see {out / 'failures.log'}", highlight=False)
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
) -> None:
    """Start the web UI (Document, Schematic, Repair and Chat tabs).

    Example: ohmlens serve --port 7860
    """
    from app.ui import build_ui

    build_ui(settings).queue().launch(server_name=host, server_port=port, show_error=True)


@app.command()
def samples(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("samples/generated"),
    pages: Annotated[int, typer.Option(help="Pages of the synthetic datasheet.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate the synthetic datasheet (with ground truth) used by benchmarks.

    Example: ohmlens samples --pages 120 --out samples/generated
    """
    from samples.make_datasheet import make_datasheet

    path = make_datasheet(out, pages=pages, seed=seed)
    console.print(f"[green]ok[/] wrote {path}", highlight=False)


class SchematicFormat(str, Enum):
    spice = "spice"
    json = "json"
    kicad = "kicad"


@app.command()
def schematic(
    source: Annotated[str, typer.Argument(help="An image, or a PDF with an optional page: drawing.pdf:3.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("."),
    format: Annotated[SchematicFormat, typer.Option("--format", "-f", help="Netlist format.")] = SchematicFormat.spice,
    repair: Annotated[str, typer.Option(help="Repair damage first: auto or off.")] = "off",
) -> None:
    """Read a schematic into components, values and nets: writes STEM.cir/.json/.net and STEM.overlay.png.

    Example: ohmlens schematic amplifier.png --out out/ --format spice
    """
    from pipelines.schematic import schematic_command

    if repair not in ("auto", "off"):
        _fail("--repair must be auto or off", 2)
    try:
        written = schematic_command(source, out, format.value, repair=repair)
    except ValueError as exc:
        _fail(str(exc))
    for path in written:
        console.print(f"[green]wrote[/] {path}", highlight=False)


@app.command("repair")
def repair_cmd(
    image: Annotated[str, typer.Argument(help="A scanned or damaged drawing (PNG/JPEG).")],
    mask: Annotated[
        str | None, typer.Option(help="Damage mask image (white = damaged); found automatically if omitted.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default STEM.repaired.png).")] = None,
    show_mask: Annotated[bool, typer.Option(help="Also write the damage mask used.")] = False,
) -> None:
    """Find the damage in a drawing, fill it in and write the repaired image.

    Example: ohmlens repair scan.png --out fixed.png --show-mask
    """
    from pipelines.repair import repair_command

    try:
        written = repair_command(image, mask, out, show_mask)
    except ValueError as exc:
        _fail(str(exc))
    for path in written:
        console.print(f"[green]wrote[/] {path}", highlight=False)


@app.command()
def ask(
    doc: Annotated[str, typer.Argument(help="A PDF, or a stored document (id, id prefix or file name).")],
    question: Annotated[str, typer.Argument(help="The question.")],
    history: Annotated[
        list[str] | None, typer.Option(help="An earlier question of the conversation (repeatable).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print {answer, found, citations} as JSON.")] = False,
    lm: Annotated[
        str | None,
        typer.Option(help="Answer with a language model: a DeepSeek-format checkpoint folder, or 'small' for ours."),
    ] = None,
) -> None:
    """Answer a question about a document, with page citations.

    Example: ohmlens ask datasheet.pdf "What is the maximum supply voltage?" --history "What is VCC?"
    """
    import json

    from pipelines.qa import ask_command
    from pipelines.store import Workspace

    try:
        answer = ask_command(doc, question, history or [], Workspace(settings.workspace), reader=_reader(lm))
    except ValueError as exc:
        _fail(str(exc))
    if json_out:
        typer.echo(json.dumps(answer.to_json(), ensure_ascii=False))
        return
    typer.echo(answer.answer)
    for c in answer.citations:
        typer.echo(f"  [p. {c.page}, {c.block_id}] {c.text}")


def _reader(lm: str | None):
    """The generative reader for --lm, or None for extractive answers."""
    if lm is None:
        return None
    from pipelines.longdoc import LMReader, load_lm

    return LMReader(load_lm(None if lm == "small" else lm))


@app.command()
def chat(
    doc: Annotated[str, typer.Argument(help="A PDF, or a stored document (id, id prefix or file name).")],
    lm: Annotated[
        str | None,
        typer.Option(help="Answer with a language model: a DeepSeek-format checkpoint folder, or 'small' for ours."),
    ] = None,
) -> None:
    """Ask questions about a document interactively; follow-ups keep the conversation's context.

    Example: ohmlens chat datasheet.pdf
    """
    from pipelines.qa import ChatSession
    from pipelines.store import Workspace

    try:
        session = ChatSession.open(doc, Workspace(settings.workspace), reader=_reader(lm))
    except ValueError as exc:
        _fail(str(exc))
    console.print("Ask a question (empty line or Ctrl-D to quit).")
    while True:
        try:
            question = console.input("[bold]> [/]").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not question:
            break
        try:
            answer = session.ask(question)
        except ValueError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            continue
        typer.echo(answer.answer)
        for c in answer.citations:
            typer.echo(f"  [p. {c.page}, {c.block_id}] {c.text}")


train_app = typer.Typer(help="Train the project's models (arguments pass through to each trainer; see --help).")
app.add_typer(train_app, name="train")
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _run_trainer(module: str, args: list[str]) -> None:
    from importlib import import_module

    raise typer.Exit(import_module(module).main(args) or 0)


@train_app.command("lm", context_settings=_PASS_THROUGH)
def train_lm(ctx: typer.Context) -> None:
    """The language backbone (lm/train.py)."""
    _run_trainer("lm.train", ctx.args)


@train_app.command("detector", context_settings=_PASS_THROUGH)
def train_detector(ctx: typer.Context) -> None:
    """The schematic symbol detector (vision/train_detector.py)."""
    _run_trainer("vision.train_detector", ctx.args)


@train_app.command("inpaint", context_settings=_PASS_THROUGH)
def train_inpaint(ctx: typer.Context) -> None:
    """The damage-mask net and the inpainter (vision/train_inpaint.py)."""
    _run_trainer("vision.train_inpaint", ctx.args)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
