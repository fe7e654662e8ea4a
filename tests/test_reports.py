"""Every workflow's HTML report, built from recorded finished runs (tests/data/reports, see its
README), opens with its answer and holds each section and plot; headless Chromium (Debian's
`chromium`) renders each to a screenshot. With OPSHELF_SCREENSHOTS_DIR set the screenshots are
also written there: `OPSHELF_SCREENSHOTS_DIR=docs/img .venv/bin/python -m pytest
tests/test_reports.py` makes the pictures of the tutorial pages.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from opshelf.core.report import chromium, screenshot
from opshelf.core.testing import skip_or_fail

DATA = Path(__file__).parent / "data" / "reports"
#: the browser window's height (px): taller than every report here
WINDOW_HEIGHT = 12000


def sections(text: str) -> list[str]:
    """The ids of the report's elements, in page order."""
    return re.findall(r"\bid='([^']+)'", text)


def n_plots(text: str) -> int:
    """Inline plots: PNG data URIs and SVG figures."""
    return text.count("src='data:image/png;base64,") + text.count("<svg")


def assert_offline(text: str) -> None:
    # nothing fetched from elsewhere: no src/href to a file or a URL
    assert not re.search(r"(src|href)\s*=\s*['\"](?!#|data:)", text)


@pytest.fixture(scope="module")
def lameval_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from opshelf.lameval.leaderboard import write_leaderboard

    results = json.loads((DATA / "lameval" / "results.json").read_text())
    return write_leaderboard(results, tmp_path_factory.mktemp("lameval"))["html"]


@pytest.fixture(scope="module")
def alloy_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from opshelf.alloy.report import write_report

    results = json.loads((DATA / "alloy" / "results.json").read_text())
    out = tmp_path_factory.mktemp("alloy") / "report.html"
    return write_report(results, DATA / "alloy", out)


@pytest.fixture(scope="module")
def cl_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    from opshelf.cl.report import render_report

    run = json.loads((DATA / "cl" / "cu-cp2k.json").read_text())
    curves = {int(k): [np.array(a) for a in v] for k, v in run["curves"].items()}
    devis = {int(k): np.array(v) for k, v in run["devis"].items()}
    out = tmp_path_factory.mktemp("cl") / "report.html"
    return render_report(run["state"], run["rows"], curves, devis, out, "concurrent learning: "
                         "cu-cp2k")


def test_lameval_report_answers_first(lameval_report: Path) -> None:
    text = lameval_report.read_text()
    ids = sections(text)
    assert ids[:4] == ["answer", "leaderboard-title", "leaderboard", "metrics"], ids
    assert "model-emt" in ids and "model-sevennet-0" in ids and ids[-1] == "data"
    answer = text[text.index("id='answer'"):text.index("id='leaderboard-title'")]
    # the recorded run: EMT has no Si parameters, 4 Si data sets and Si's Delta fail
    assert "sevennet-0 is the most accurate" in answer and "5 of 48 tasks failed" in answer
    board = text[text.index("id='leaderboard'"):text.index("id='metrics'")]
    assert "0.5837718213729031" not in text and ">0.584<" in board  # 3 significant digits
    # parity, EOS and NVE plots per model (3 models)
    assert n_plots(text) == 9
    for metric in ("M_FF", "M_IS", "M_E", "Delta", "failed tasks"):
        assert f"<dt>{metric}" in text, metric
    # failures: one line per task kind with the reason and its effect, no exception class first
    assert "accuracy on Si-eos, Si-rattled, Si-strained, Si-vacancy failed (No EMT-potential " \
        "for Si (NotImplementedError)" in text
    assert "scored as the dummy model (1) in M_FF" in text
    assert "<li>accuracy Si-eos: NotImplementedError" not in text  # the raw form of before
    assert "each data set relative to its mean reference energy" in text  # parity caption
    assert_offline(text)


def test_lameval_terminal_counts_failures() -> None:
    from opshelf.lameval.leaderboard import make_leaderboard
    from opshelf.lameval.workflow import summary_lines

    results = json.loads((DATA / "lameval" / "results.json").read_text())
    lines = summary_lines(make_leaderboard(results), results, Path("results"))
    assert "5 of 48 tasks failed (emt: 5)" in lines[0]
    emt = next(line for line in lines if line.startswith("  emt:"))
    assert emt == "  emt: M_FF 0.584, Delta 10.2 meV/atom, M_IS 0, 579 µs/atom/step, " \
        "5 failed tasks"


def test_lameval_verdict_counts_failed_tasks(tmp_path: Path) -> None:
    """The run's verdict (its last line, kept in run.json for `opshelf status` and `runs`)
    counts the failed tasks beside the leader."""
    from opshelf.core.workflow import BuildContext
    from opshelf.lameval.leaderboard import write_leaderboard
    from opshelf.lameval.workflow import LamEvalWorkflow

    write_leaderboard(json.loads((DATA / "lameval" / "results.json").read_text()),
                      tmp_path / "results")
    verdict = LamEvalWorkflow().outcome(None, BuildContext(run_dir=tmp_path, config_dir=tmp_path))
    assert verdict.reached
    assert verdict.summary == "sevennet-0 is the most accurate of 3 model(s) on these data " \
        "(M_FF 0.294). 5 of 48 tasks failed (emt: 5)."


def test_lameval_parity_is_relative_per_data_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The energy parity plot's points: each data set relative to its mean reference energy
    per atom, in meV/atom: within ±300 meV/atom for these near-equilibrium sets, where the
    absolute energies span -1310..-56 eV/atom."""
    from opshelf.core.report import pyplot
    from opshelf.lameval import leaderboard

    results = json.loads((DATA / "lameval" / "results.json").read_text())
    figures: list = []
    monkeypatch.setattr(leaderboard, "_img", lambda fig, caption: figures.append(fig) or "")
    leaderboard._parity_plot(results[2], "sevennet-0")
    ax_e = figures[0].axes[0]
    xs = [x for line in ax_e.lines[:-1] for x in line.get_xdata()]  # the last: the diagonal
    pyplot().close(figures[0])
    # 3 elements x (EOS 5 + rattled 3 + strained 2 + vacancy 1 frames)
    assert len(xs) == 33 and max(abs(x) for x in xs) < 300


def test_alloy_report_answers_first(alloy_report: Path) -> None:
    text = alloy_report.read_text()
    ids = sections(text)
    assert ids[:2] == ["answer", "properties"] and ids[-1] == "settings", ids
    assert "15 of 15 properties computed" in text
    properties = text[text.index("id='properties'"):text.index("cu: details")]
    # surfaces in the table; B to 0.1 GPa (the recorded 138.02852826104404 reads 138.0)
    assert "surface (111) (J/m²)" in properties and "<td>138.0</td>" in properties
    assert "138.028" not in text
    # EOS, surface bars, stacking fault, phonon bands + DOS
    assert n_plots(text) == 4
    phonon = text[text.index("phonon bands and density"):]
    assert "DOS (states/THz)" in text and "wave vector" in text
    for label in ("Γ", "X", "K|U", "L"):
        assert f">{label}<" in text or label in phonon, label
    assert "{'potential'" not in text and "<code>potential.files.Cu</code>" in text
    assert_offline(text)


def test_alloy_one_interaction_has_no_relative_difference(tmp_path: Path) -> None:
    from opshelf.alloy.report import render_report

    results = json.loads((DATA / "alloy" / "results.json").read_text())
    results["interactions"] = {"eam": results["interactions"]["eam"]}
    results["results"]["cu"] = {"eam": results["results"]["cu"]["eam"]}
    text = render_report(results, DATA / "alloy")
    assert "relative difference" not in text and "(reference)" not in text
    assert "6 of 6 properties computed for 1 structure with 1 interaction" in text


def test_cl_report_answers_first(cl_report: Path) -> None:
    text = cl_report.read_text()
    answer = text[text.index("id='answer'"):text.index("Held-out error by iteration")]
    # the recorded cu-cp2k run stopped unconverged; its last models' held-out error
    assert "stopped at max iterations, not converged" in answer
    assert "force RMSE 0.098 eV/Å" in answer and "on 4 held-out frames" in answer
    # held-out plot, learning curves, deviations, ratios
    assert n_plots(text) == 4
    table = text[text.index("class='iterations'"):]
    assert "max iterations, move on</td>" in table  # the decision column, whole
    assert "<pre" not in text
    assert_offline(text)


def test_cl_iteration_axes_have_integer_ticks(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """Issue 20: no tick at iteration 0.25. Every axis of the cl report's plots counted in
    iterations or frames shows whole numbers only (the recorded cu-cp2k run: 3 iterations,
    where matplotlib's default locator put ticks at 0.25 steps)."""
    import numpy as np

    from opshelf.cl import report

    figures: list = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "")
    run = json.loads((DATA / "cl" / "cu-cp2k.json").read_text())
    curves = {int(k): [np.array(a) for a in v] for k, v in run["curves"].items()}
    devis = {int(k): np.array(v) for k, v in run["devis"].items()}
    report.render_report(run["state"], run["rows"], curves, devis, tmp_path / "r.html", "cl")
    counted = [ax for fig in figures for ax in fig.axes
               if re.search(r"iteration|frames \(init", ax.get_xlabel())]
    assert len(counted) == 4, [ax.get_xlabel() for fig in figures for ax in fig.axes]
    for ax in counted:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_xlabel(), ticks)


@pytest.mark.parametrize("name", ["lameval", "alloy", "cl"])
def test_each_reports_screenshot_is_on_its_tutorial_page(name: str) -> None:
    """Issue 20: the screenshots test_screenshot makes (OPSHELF_SCREENSHOTS_DIR=docs/img)
    are published: the file is in docs/img and the workflow's tutorial shows it."""
    root = Path(__file__).resolve().parents[1]
    image = root / "docs" / "img" / f"report-{name}.png"
    assert image.is_file() and image.stat().st_size > 10_000, image
    tutorial = (root / "docs" / "tutorials" / f"{name}.md").read_text(encoding="utf-8")
    assert f"](../img/report-{name}.png)" in tutorial, name


@pytest.mark.parametrize("name", ["lameval", "alloy", "cl"])
def test_screenshot(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Chromium renders each report: a page of the expected width, not blank, as tall as the
    content (the lameval and alloy pages run past one screen)."""
    if chromium() is None:
        skip_or_fail("chromium not installed (Debian: apt-get install chromium)")
    report = request.getfixturevalue(f"{name}_report")
    check_screenshot(report, tmp_path / f"report-{name}.png", min_height=1200)


def check_screenshot(report: Path, png: Path, min_height: int) -> None:
    """Chromium's screenshot of `report`: 1280 px wide, the whole page (cut below its
    content, above the window's bottom), not blank; with OPSHELF_SCREENSHOTS_DIR set, a half
    size copy there."""
    from PIL import Image

    png = screenshot(report, png, height=WINDOW_HEIGHT)
    with Image.open(png) as image:
        width, height = image.size
        colours = len(image.convert("RGB").getcolors(1 << 20) or [])
        target = os.environ.get("OPSHELF_SCREENSHOTS_DIR")
        if target:  # for the docs: half size, 256 colours (a page is ~0.2 MB, not ~1 MB)
            small = image.convert("RGB").resize((width // 2, height // 2), Image.LANCZOS)
            small.quantize(256).save(Path(target) / png.name, optimize=True)
    assert width == 1280 and min_height < height < WINDOW_HEIGHT, (width, height)
    assert colours > 50  # text, tables and plots, not a blank page


def test_report_of_two_runs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    """`opshelf report A B`: two finished lameval runs (the recorded results, one with EMT
    left out) in one offline file: the comparison leaderboard of every (run, model), then
    each run's report in its own column."""
    from opshelf.core.cli import main

    results = json.loads((DATA / "lameval" / "results.json").read_text())
    for name, models in (("a", results), ("b", results[1:])):
        (tmp_path / name / "results").mkdir(parents=True)
        (tmp_path / name / "results" / "results.json").write_text(json.dumps(models))
        (tmp_path / name / "run.json").write_text(json.dumps(
            {"workflow": "lameval", "workflow_ref": "lameval", "run_id": name,
             "created": "2026-12-05T21:00:00+00:00", "source_config": "config.yaml"}))
    assert main(["report", "a", "b", "--runs-dir", str(tmp_path)]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == tmp_path / "compare-a-vs-b.html"
    text = out.read_text()
    comparison = text[text.index("id='comparison'"):text.index("<iframe")]
    assert comparison.count("<tr>") == 1 + 3 + 2  # header, a's 3 models, b's 2
    assert "The runs scored the same data sets" in comparison
    assert text.count("<iframe") == 2
    assert_offline(text.replace("src='data:", "src='#"))
    if chromium() is not None:  # the picture of the lameval tutorial
        check_screenshot(out, tmp_path / "report-lameval-compare.png", min_height=1000)


def test_alloy_comparison_puts_every_run_interaction_in_one_table() -> None:
    """Two alloy runs (the recorded cu-compare run and one with EAM only): one column per
    'run: interaction', relative differences to the first column."""
    from opshelf.alloy.report import compare_runs

    full = json.loads((DATA / "alloy" / "results.json").read_text())
    eam_only = json.loads(json.dumps(full))
    eam_only["interactions"] = {"eam": full["interactions"]["eam"]}
    eam_only["results"]["cu"] = {"eam": full["results"]["cu"]["eam"]}
    text = compare_runs({"cmp": full, "eam": eam_only})
    heads = re.findall(r"<th>([^<]+)", text)
    assert heads == ["cmp: chgnet (reference)", "cmp: eam", "cmp: emt", "eam: eam"], heads
    # the same EAM numbers in both runs: 0.0 % from each other, CHGNet's B 136.7 is the base
    bulk = text[text.index("B (GPa), EOS"):].split("</tr>")[0]
    assert "<td>136.7</td>" in bulk and "138.0 <span class=\"diff\">(+0.9 %)</span>" in bulk


def test_cl_comparison_tables_each_runs_verdict_and_error() -> None:
    """The recorded cu-cp2k run beside the same run cut after its second iteration."""
    from opshelf.cl.report import compare_runs

    state = json.loads((DATA / "cl" / "cu-cp2k.json").read_text())["state"]
    early = {**state, "done": False, "history": state["history"][:2]}
    text = compare_runs({"cu-cp2k": state, "cut": early})
    rows = text[text.index("<table>"):text.index("</table>")].split("</tr>")
    assert "<td class='l'>cu-cp2k</td><td class='l'>not converged</td><td>3</td>" in rows[1]
    assert "<td>0.098</td>" in rows[1] and "<td>0.083</td>" in rows[2]  # eV/Å, 3 digits
    assert "<td class='l'>not finished</td>" in rows[2]
    assert n_plots(text) == 1
