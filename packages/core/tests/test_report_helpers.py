"""core's report helpers: digits, tables, the side-by-side page, the comparison's refusals
and Chromium's screenshot of a small page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opshelf.core.errors import UserError
from opshelf.core.report import (
    answer,
    chromium,
    fmt,
    page,
    screenshot,
    side_by_side,
    table,
    write_comparison,
)
from opshelf.core.rundir import RunDir
from opshelf.core.testing import skip_or_fail


def test_fmt_digits() -> None:
    # issue 20's examples: B printed as 138.4395 reads 138.4 at 4 significant digits, an
    # M_FF of 0.5837718213729031 reads 0.584 at 3
    assert fmt(138.4395, 4) == "138.4" and fmt(0.5837718213729031) == "0.584"
    assert fmt(42466.927) == "42\u2009467" and fmt(7) == "7"
    assert fmt(None) == "–" and fmt(0.0) == "0" and fmt(2.5e-7) == "2.50e-07"
    assert fmt(float("nan")) == "nan" and fmt("emt") == "emt"


def test_table_escapes_and_formats() -> None:
    html = table(["model", "M_FF"], [["<emt>", 0.58377], ["a&b", None]])
    assert "<td class='l'>&lt;emt&gt;</td><td>0.584</td>" in html
    assert "<td class='l'>a&amp;b</td><td>–</td>" in html
    assert "class='answer ok'" in answer("converged", True)
    assert "class='answer'" in answer("a leaderboard", None)


def test_side_by_side_is_one_offline_file() -> None:
    text = side_by_side("cl: a vs b", "<h2 id='comparison'>x</h2>",
                        [("a", "<p>'a' & b</p>"), ("b", "<p>b</p>")])
    assert text.count("<iframe") == 2
    assert "srcdoc=\"&lt;p&gt;&#x27;a&#x27; &amp; b&lt;/p&gt;\"" in text  # inline, escaped
    assert "http" not in text and "src=" not in text.replace("srcdoc=", "")


def fake_run(root: Path, name: str, workflow: str) -> RunDir:
    (root / name).mkdir()
    (root / name / "run.json").write_text(json.dumps(
        {"workflow": workflow, "workflow_ref": workflow, "run_id": name,
         "created": "2026-12-05T21:00:00+00:00", "source_config": "config.yaml"}))
    return RunDir.open(name, root)


def test_comparison_refuses_mixed_workflows_and_repeats(tmp_path: Path) -> None:
    one, two = fake_run(tmp_path, "one", "label"), fake_run(tmp_path, "two", "other")
    with pytest.raises(UserError, match=r"runs of different workflows \(one \(label\), two "):
        write_comparison([one, two])
    with pytest.raises(UserError, match="a run is named twice"):
        write_comparison([one, one])


def test_screenshot_is_cut_below_the_page(tmp_path: Path) -> None:
    """A page 700 px tall in a 3000 px window: the PNG is cut just below its content."""
    from PIL import Image

    if chromium() is None:
        skip_or_fail("chromium not installed (Debian: apt-get install chromium)")
    report = tmp_path / "r.html"
    report.write_text(page("t", ["<div style='height:700px;background:#036'></div>"]))
    with Image.open(screenshot(report, tmp_path / "r.png", width=800, height=3000)) as image:
        width, height = image.size
        assert image.convert("RGB").getpixel((400, 300)) == (0, 51, 102)
    # body margin (2em) + 700 px + the 24 px kept below the content
    assert width == 800 and 700 < height < 820, height
