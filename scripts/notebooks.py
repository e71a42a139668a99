"""Execute the notebooks headlessly on the project's TypeScript kernel and render them to HTML.

    npm run notebooks                                  every notebook at smoke scale, into notebooks/executed/smoke/
    npm run notebooks -- --scale reduced --commit      reduced scale, outputs written into notebooks/ (committed)
    npm run notebooks -- 07-vgg16 13-comparison        selected notebooks only

Each notebook runs in a fresh kernel ("fer-tslab", registered by npm run setup)
whose working folder is the output folder, so the links from outputs to PNG
files stay valid in the executed notebook and in its HTML. The parameters
reach the notebooks through FER_SCALE, FER_DATA, FER_WEIGHTS and
FER_IMAGES_DIR. Any cell error, TypeScript type errors included, marks the
notebook as failed; the others still run, and the exit status is 1 when any
failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TEMPLATES = ROOT / "scripts" / "nbconvert"
KERNEL_NAME = "fer-tslab"
SCALES = ("smoke", "reduced", "full")
# Scale of the outputs committed in notebooks/ and images/ (COMMITTED_SCALE in lib/notebook/runs.ts).
COMMITTED_SCALE = "reduced"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_PLACEHOLDER = "/* fer-plotly-js */"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="npm run notebooks --", description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook names or paths (default: every notebook in notebooks/, in name order)")
    parser.add_argument("--scale", choices=SCALES, help=f"training scale (default: smoke, or {COMMITTED_SCALE} with --commit)")
    parser.add_argument("--commit", action="store_true", help="write executed notebooks and HTML into notebooks/ and figures into images/ (the committed outputs)")
    parser.add_argument("--out", type=Path, help="folder inside notebooks/ for executed notebooks, HTML and figures (default: notebooks/executed/<scale>)")
    parser.add_argument("--data", type=Path, help="dataset folder (default: $FER_DATA or data/fer2013)")
    parser.add_argument("--weights", choices=("auto", "imagenet", "random"), help="initial backbone weights (default: auto, ImageNet where available offline)")
    parser.add_argument("--fresh", action="store_true", help="delete runs/notebooks/<scale>/ first, so that every model trains anew instead of resuming")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run before it counts as failed (default 3600)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML export")
    return parser.parse_args(argv)


def fail(message: str) -> None:
    print(f"[notebooks] error: {message}", file=sys.stderr)
    sys.exit(2)


def select_notebooks(names: list[str]) -> list[Path]:
    """Resolves names of notebooks in notebooks/ (with or without .ipynb) and paths of other notebook files."""
    available = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not names:
        return available
    chosen = []
    for name in names:
        if name.endswith(".ipynb") and Path(name).is_file():
            chosen.append(Path(name).resolve())
            continue
        stem = Path(name).name.removesuffix(".ipynb")
        match = [path for path in available if path.stem == stem]
        if not match:
            fail(f'notebook "{name}" not found in {NOTEBOOKS} (available: {", ".join(p.stem for p in available)}).')
        chosen.extend(match)
    return chosen


def check_setup() -> None:
    """Checks what `npm run setup` provides, so that a missing step fails before any kernel starts."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        fail(f'the Jupyter kernel "{KERNEL_NAME}" is not installed in {sys.prefix}. Run npm run setup.')
    link = NOTEBOOKS / "node_modules" / "fer-toolkit"
    if not (link / "dist" / "index.js").exists():
        fail(f"{link} does not lead to a built fer-toolkit (dist/index.js). Run npm run setup, or npm run build.")


def plotly_source() -> str:
    """Returns plotly.js for the HTML pages: the minified copy in the plotly Python package, else the npm bundle."""
    candidates = []
    try:
        import plotly

        candidates.append(Path(plotly.__file__).parent / "package_data" / "plotly.min.js")
    except ImportError:
        pass
    candidates.append(ROOT / "node_modules" / "plotly.js-dist" / "plotly.js")
    for path in candidates:
        if path.exists():
            # A literal "</script" would end the inline element early.
            return path.read_text(encoding="utf-8").replace("</script", "<\\/script")
    fail(f"plotly.js not found (looked in {', '.join(map(str, candidates))}). Run npm run setup.")
    return ""


def html_exporter():
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    # The plotly figure first, so that the template draws it rather than its PNG link or text.
    config.NbConvertBase.display_data_priority = [
        PLOTLY_MIME,
        "text/html",
        "text/markdown",
        "image/svg+xml",
        "text/latex",
        "image/png",
        "image/jpeg",
        "text/plain",
    ]
    return HTMLExporter(config=config, template_name="fer-html", extra_template_basedirs=[str(TEMPLATES)])


def write_html(notebook, target: Path, exporter, plotly_js: str) -> None:
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": target.stem}})
    if PLOTLY_PLACEHOLDER not in body:
        fail(f"the HTML template in {TEMPLATES} lost its plotly placeholder; {target} cannot show figures.")
    target.write_text(body.replace(PLOTLY_PLACEHOLDER, plotly_js, 1), encoding="utf-8")


def error_summary(error: Exception) -> str:
    """Returns the last lines of a cell error: the failing code and tslab's message."""
    lines = [line for line in str(error).splitlines() if line.strip() and not set(line) <= {"-"}]
    return "\n    ".join(lines[-12:])


def execute(source: Path, target: Path, timeout: int) -> tuple[object, str | None]:
    """Executes `source` with the working folder target.parent and returns the notebook and an error message, if any."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=timeout,
        # Timestamps would change the committed notebooks on every run.
        record_timing=False,
        resources={"metadata": {"path": str(target.parent)}},
    )
    try:
        client.execute()
        return notebook, None
    except CellTimeoutError as error:
        return notebook, f"a cell ran longer than {timeout} s (--timeout): {error_summary(error)}"
    except DeadKernelError as error:
        return notebook, f"the kernel died: {error}"
    except CellExecutionError as error:
        return notebook, error_summary(error)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    scale = args.scale or (COMMITTED_SCALE if args.commit else "smoke")
    if args.commit and args.out is not None:
        fail("--commit writes into notebooks/; leave out --out.")
    if args.commit and scale != COMMITTED_SCALE:
        print(f"[notebooks] warning: --commit at scale {scale}; the committed outputs are documented as {COMMITTED_SCALE} scale.", file=sys.stderr)
    out = NOTEBOOKS if args.commit else (args.out or NOTEBOOKS / "executed" / scale).resolve()
    if out != NOTEBOOKS and NOTEBOOKS not in out.parents:
        fail(f"--out {out} is outside {NOTEBOOKS}; the kernel finds fer-toolkit through notebooks/node_modules, so choose a folder inside notebooks/.")
    check_setup()
    sources = select_notebooks(args.notebooks)
    if not sources:
        fail(f"no notebooks in {NOTEBOOKS}. Generate them with npm run notebooks:make.")

    os.environ["FER_SCALE"] = scale
    # The kernels inherit this environment. TensorFlow's C++ start-up notices go
    # to the kernel's own stderr, which lands here rather than in the notebook.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.data is not None:
        os.environ["FER_DATA"] = str(args.data.resolve())
    if args.weights is not None:
        os.environ["FER_WEIGHTS"] = args.weights
    if args.commit:
        os.environ.pop("FER_IMAGES_DIR", None)
    else:
        os.environ["FER_IMAGES_DIR"] = str(out / "images")
    if args.fresh:
        runs = Path(os.environ.get("FER_NOTEBOOK_RUNS", ROOT / "runs" / "notebooks")) / scale
        print(f"[notebooks] --fresh: deleting {runs}", file=sys.stderr)
        shutil.rmtree(runs, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    import nbformat

    exporter = None if args.no_html else html_exporter()
    plotly_js = "" if args.no_html else plotly_source()
    results = []
    started = time.monotonic()
    for source in sources:
        target = out / source.name
        print(f"[notebooks] {source.name}: executing at scale {scale} ...", file=sys.stderr, flush=True)
        begin = time.monotonic()
        notebook, error = execute(source, target, args.timeout)
        seconds = time.monotonic() - begin
        # A failed notebook is written too, so that its error output can be read.
        nbformat.write(notebook, target)
        if exporter is not None:
            write_html(notebook, target.with_suffix(".html"), exporter, plotly_js)
        status = "ok" if error is None else "FAILED"
        print(f"[notebooks] {source.name}: {status} in {seconds:.0f} s -> {target.relative_to(ROOT)}", file=sys.stderr, flush=True)
        if error is not None:
            print(f"    {error}", file=sys.stderr, flush=True)
        results.append((source.name, status, seconds))

    failed = [name for name, status, _ in results if status != "ok"]
    total = time.monotonic() - started
    print(f"[notebooks] {len(results) - len(failed)} passed, {len(failed)} failed in {total / 60:.1f} min (scale {scale}, outputs in {out.relative_to(ROOT)}/)", file=sys.stderr)
    if failed:
        print(f"[notebooks] failed: {', '.join(failed)}", file=sys.stderr)
    # The last line alone, in the "N passed, N failed" form that CI logs are read for.
    print(f"notebooks: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
