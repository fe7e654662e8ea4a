"""Helpers of the HTML reports the workflows write: one self-contained file each (no script,
font, stylesheet or image outside it, so it renders offline and prints), numbers with
sensible digits, plots inline, several runs side by side, and screenshots with headless
Chromium (Debian's `chromium` package).

A report opens with its answer (`answer`), then the diagnostics. Pure functions except
`screenshot`, which starts Chromium through `run_command`.
"""

from __future__ import annotations

import base64
import html
import io
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.core.errors import UserError

if TYPE_CHECKING:
    from opshelf.core.rundir import RunDir

#: the style every report shares; a workflow appends its own rules
BASE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em;background:#fff}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right;vertical-align:top}th{background:#f2f2f2}
td.l,th.l{text-align:left}caption{text-align:left;font-weight:bold;padding:.2em 0}
.answer{font-size:1.15em;padding:.6em 1em;border-left:6px solid #888;background:#f6f6f6}
.ok{border-color:#2a2;background:#efe}.bad{border-color:#c22;background:#fee}
.note{color:#555;font-size:.9em}.plots{display:flex;flex-wrap:wrap;gap:1em}
.plots figure{margin:0}figcaption{font-size:.9em;color:#555}code{background:#f4f4f4}
img,svg{max-width:100%;height:auto}dl dt{font-weight:bold;margin-top:.4em}dl dd{margin-left:1.5em}
"""


def fmt(value: Any, sig: int = 3) -> str:
    """A number as a person reads it: `sig` significant digits (138.4395 -> '138' at 3,
    '138.4' at 4), integers from 10**sig up grouped by thin spaces ('42 467'), scientific
    notation below 1e-4; None -> '–'; anything else as text."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and abs(value) >= 10 ** sig):
        return f"{round(value):,}".replace(",", "\u2009")
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) < 1e-4:
        return f"{value:.{sig - 1}e}"
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def esc(text: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None,
          left: int = 1, sig: int = 3) -> str:
    """An HTML table; the first `left` columns left-aligned (labels), numbers through `fmt`.
    A cell given as `Raw(...)` is inserted as HTML."""
    def cell(tag: str, i: int, value: Any) -> str:
        cls = " class='l'" if i < left else ""
        text = value.html if isinstance(value, Raw) else esc(fmt(value, sig))
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>{body}</table>"


class Raw:
    """A table cell holding HTML (already escaped by its maker)."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def answer(text: str, ok: bool | None) -> str:
    """The report's opening answer: green when the goal was reached, red when not, grey when
    the question has no yes/no (a leaderboard)."""
    cls = "" if ok is None else (" ok" if ok else " bad")
    return f"<p class='answer{cls}' id='answer'>{esc(text)}</p>"


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, text kept as text in SVG output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    return plt


def png_uri(fig: Any, dpi: int = 90) -> str:
    """A figure as a data: URI (PNG); closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def png_figure(fig: Any, caption: str) -> str:
    """A figure as an inline PNG with its caption (alt text = caption)."""
    return (f"<figure><img alt='{esc(caption)}' src='{png_uri(fig)}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def svg_figure(fig: Any, caption: str) -> str:
    """A figure as inline SVG with its caption; closes the figure."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    pyplot().close(fig)
    text = buffer.getvalue()
    return (f"<figure>{text[text.index('<svg'):]}"  # no XML prolog inside HTML
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, body: Sequence[str], style: str = "") -> str:
    """A whole HTML document: `body` parts joined (empty parts dropped)."""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(title)}</title><style>{BASE_STYLE}{style}</style></head><body>"
            + "".join(p for p in body if p) + "</body></html>\n")


def side_by_side(title: str, summary: str, reports: Sequence[tuple[str, str]]) -> str:
    """Several runs' reports in one offline page: `summary` (the workflow's comparison of
    their answers) first, then each whole report in its own column (an iframe whose
    document is inline, `srcdoc`: nothing is loaded from outside the file)."""
    columns = "".join(
        f"<section class='run'><h2>{esc(name)}</h2><iframe title='{esc(name)}' "
        f"srcdoc=\"{html.escape(report, quote=True)}\"></iframe></section>"
        for name, report in reports)
    style = (f"body{{max-width:none}}.runs{{display:grid;grid-template-columns:repeat("
             f"{len(reports)},minmax(560px,1fr));gap:1em}}.run iframe{{width:100%;"
             "height:2400px;border:1px solid #ccc}")
    return page(title, [f"<h1>{esc(title)}</h1>", summary,
                        f"<div class='runs'>{columns}</div>"], style)


def chromium() -> str | None:
    """The headless browser's program name on PATH (Debian: `chromium`), or None."""
    for name in ("chromium", "chromium-browser", "chromium-headless-shell"):
        if shutil.which(name):
            return name
    return None


def screenshot(report: Path, out: Path, width: int = 1280, height: int = 6000,
               timeout_s: float = 120.0) -> Path:
    """A PNG of an HTML report as headless Chromium renders it, `width` px wide, cut below
    the last non-white row (Chromium shoots the window, not the page)."""
    from PIL import Image, ImageChops

    from opshelf.core.process import run_command

    program = chromium()
    if program is None:
        raise UserError("screenshot: no chromium on PATH (Debian: apt-get install chromium)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="opshelf-chromium-") as scratch:  # its profile
        run_command([program, "--headless", "--no-sandbox", "--disable-gpu",
                     "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                     f"--user-data-dir={scratch}/profile", f"--window-size={width},{height}",
                     f"--screenshot={out}", report.resolve().as_uri()], cwd=scratch,
                    timeout=timeout_s, log_name="chromium", env={"HOME": scratch})
    with Image.open(out) as image:
        rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, "white")).getbbox()
    bottom = min(rgb.height, (box[3] if box else 0) + 24)
    rgb.crop((0, 0, rgb.width, max(bottom, 1))).save(out, optimize=True)
    return out


def write_comparison(runs: Sequence[RunDir], out: Path | None = None) -> Path:
    """`opshelf report RUN1 RUN2 ...`: the runs of one workflow side by side in one offline
    HTML file: the workflow's comparison of their answers (`WorkflowPlugin.compare`) first,
    then each run's own report in a column. Runs of different workflows are refused."""
    from opshelf.core.local.runner import resolve_workflow

    refs = {run.name: run.read().workflow_ref for run in runs}
    if len(set(refs.values())) > 1:
        listed = ", ".join(f"{name} ({ref})" for name, ref in refs.items())
        raise UserError(f"report: runs of different workflows ({listed}): compare runs of "
                        "one workflow")
    if len({run.path.resolve() for run in runs}) < len(runs):
        raise UserError("report: a run is named twice")
    plugin = resolve_workflow(next(iter(refs.values())))
    reports = [(run.name, plugin.report(run.path).read_text(encoding="utf-8")) for run in runs]
    names = [run.name for run in runs]
    out = out or runs[0].path.parent / f"compare-{'-vs-'.join(names)}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = plugin.compare([run.path for run in runs])
    out.write_text(side_by_side(f"{plugin.name}: {' vs '.join(names)}", summary, reports),
                   encoding="utf-8")
    return out
