"""The HTML report of a cl run: one self-contained file (plots as base64 PNG), renders offline.

Learning curves per iteration, model-deviation histograms per iteration, class ratios over
iterations, data growth, and the status table.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from opshelf.cl.status import (
    fanout_artifacts,
    format_table,
    iteration_steps,
    latest_state,
    phase,
    status_rows,
)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def learning_curves(wfdir: Path) -> dict[int, list[np.ndarray]]:
    """iteration -> (step, rmse_f_trn) arrays, one per model."""
    from opshelf.train.train import read_lcurve

    out: dict[int, list[np.ndarray]] = {}
    for it, steps in sorted(iteration_steps(wfdir).items()):
        done = [d for d in steps.get("run-train", []) if phase(d) == "Succeeded"]
        if done:
            for path in fanout_artifacts(done, "lcurve"):
                try:
                    names, rows = read_lcurve(path)
                except Exception:  # a report must not fail on one unreadable curve
                    continue
                if "rmse_f_trn" in names:
                    out.setdefault(it, []).append(rows[:, [0, names.index("rmse_f_trn")]])
    return out


def deviations(wfdir: Path) -> dict[int, np.ndarray]:
    """iteration -> every explored frame's max force deviation (eV/A)."""
    from opshelf.md.model_devi import read_model_devi

    out: dict[int, np.ndarray] = {}
    for it, steps in sorted(iteration_steps(wfdir).items()):
        values = []
        for root in fanout_artifacts(steps.get("run-explore", []), "trajs"):
            for f in sorted(Path(root).rglob("model_devi.out")):
                devi = read_model_devi(f)
                if devi.size:
                    values.append(devi[:, 4])
        if values:
            out[it] = np.concatenate(values)
    return out


def write_report(wfdir: Path, out: Path, title: str = "concurrent learning") -> Path:
    """The report of a local run, from its workflow folder (every iteration's steps)."""
    return render_report(latest_state(wfdir) or {}, status_rows(wfdir), learning_curves(wfdir),
                         deviations(wfdir), out, title)


def render_report(state: dict[str, Any], table_rows: list[dict[str, Any]],
                  curves: dict[int, list[np.ndarray]], devis: dict[int, np.ndarray], out: Path,
                  title: str = "concurrent learning") -> Path:
    """One self-contained HTML file: the iterations table, learning curves and model
    deviations per iteration (when given), ratios and data growth over iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = state.get("history", [])
    images: list[tuple[str, str]] = []

    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        cmap = plt.get_cmap("viridis")
        for k, (it, models) in enumerate(sorted(curves.items())):
            for m, rows in enumerate(models):
                ax.semilogy(rows[:, 0], rows[:, 1], color=cmap(k / max(1, len(curves) - 1)),
                            lw=1, label=f"iter {it}" if m == 0 else None)
        ax.set_xlabel("training step")
        ax.set_ylabel("force RMSE, training (eV/Å)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        images.append(("Learning curves (every model, per iteration)", _png(fig)))

    if devis:
        fig, ax = plt.subplots(figsize=(7, 4))
        finite = np.concatenate([v[np.isfinite(v)] for v in devis.values()])
        hi = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        bins = np.linspace(0, max(hi, 1e-3), 50)
        for it, values in sorted(devis.items()):
            ax.hist(np.clip(values[np.isfinite(values)], 0, bins[-1]), bins=bins,
                    histtype="step", label=f"iter {it}")
        trust = {}
        for r in history:
            trust.setdefault("lo", r.get("level_f_lo"))
        if trust.get("lo") is not None:
            ax.axvline(trust["lo"], color="grey", ls=":", label="f_lo (iter 0)")
        ax.set_xlabel("max force model deviation (eV/Å)")
        ax.set_ylabel("frames")
        ax.legend(fontsize=8)
        fig.tight_layout()
        images.append(("Model deviation per iteration", _png(fig)))

    if history:
        its = [r["iteration"] for r in history]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, color in (("accurate_ratio", "tab:green"), ("candidate_ratio", "tab:orange"),
                           ("failed_ratio", "tab:red")):
            ax1.plot(its, [r[key] for r in history], "o-", color=color,
                     label=key.replace("_", " "))
        ax1.set_xlabel("iteration")
        ax1.set_ylabel("fraction of explored frames")
        ax1.set_ylim(-0.02, 1.02)
        ax1.legend(fontsize=8)
        ax2.plot(its, np.cumsum([r["n_labelled"] for r in history]), "s-")
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("labelled frames (cumulative)")
        fig.tight_layout()
        images.append(("Ratios over iterations and data growth", _png(fig)))

    table = format_table(table_rows, state)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
             "pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(history)} iterations finished. {html.escape(state.get('reason', ''))}</p>",
             "<h2>Iterations</h2>", f"<pre>{html.escape(table)}</pre>"]
    for caption, uri in images:
        parts += [f"<h2>{html.escape(caption)}</h2>", f"<img alt='{html.escape(caption)}' "
                  f"src='{uri}'>"]
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out
