"""The HTML report of a cl run: one self-contained file (plots as base64 PNG), renders offline.

The answer first: converged or not (and why not), and the held-out error of every
iteration's models against the frames they were trained on. Below, the diagnostics: the
iterations table, training learning curves, model-deviation histograms per iteration,
class ratios over iterations and data growth.
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
    from opshelf.cl.results import labelling_cost

    return render_report(latest_state(wfdir) or {}, status_rows(wfdir), learning_curves(wfdir),
                         deviations(wfdir), out, title, labelling_cost(wfdir).line())


def _held_out_plot(history: list[dict[str, Any]]) -> str | None:
    """Held-out force and energy RMSE against training frames, one point per iteration."""
    import matplotlib.pyplot as plt

    scored = [r for r in history if r.get("test_force_rmse_eV_per_A") is not None]
    if not scored:
        return None
    n = [r["n_train_frames"] for r in scored]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(n, [r["test_force_rmse_eV_per_A"] for r in scored], "o-", label="force RMSE")
    devi = [r.get("test_devi_f_median_eV_per_A") for r in scored]
    if all(v is not None for v in devi):
        ax1.plot(n, devi, "s--", color="grey", label="median max deviation (ensemble)")
        ax1.plot(n, [r["test_max_force_error_median_eV_per_A"] for r in scored], "^:",
                 color="tab:red", label="median max error (ensemble mean)")
    for r, x in zip(scored, n):
        ax1.annotate(f"it {r['iteration']}", (x, r["test_force_rmse_eV_per_A"]),
                     textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax1.set_xlabel("training frames (init data + labels so far)")
    ax1.set_ylabel("eV/Å")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=8)
    ax2.plot(n, [1000 * r["test_energy_rmse_eV_per_atom"] for r in scored], "o-",
             color="tab:purple")
    ax2.set_xlabel("training frames (init data + labels so far)")
    ax2.set_ylabel("energy RMSE (meV/atom)")
    ax2.set_ylim(bottom=0)
    fig.tight_layout()
    return _png(fig)


def _held_out_table(history: list[dict[str, Any]]) -> str:
    from opshelf.cl.results import overconfidence

    scored = [r for r in history if r.get("test_force_rmse_eV_per_A") is not None]
    if not scored:
        return ("<p>No held-out set (<code>test.n_frames: 0</code> and no "
                "<code>test.data</code>): the accuracy of the models is not measured.</p>")

    def cell(value: Any, scale: float = 1.0, fmt: str = ".3f") -> str:
        return "-" if value is None else format(scale * value, fmt)

    rows = "".join(
        f"<tr><td>{r['iteration']}</td><td>{r['n_train_frames']}</td>"
        f"<td>{cell(r['test_force_rmse_eV_per_A'])}</td>"
        f"<td>{cell(r['test_energy_rmse_eV_per_atom'], 1000, '.1f')}</td>"
        f"<td>{cell(r.get('test_virial_rmse_eV_per_atom'), 1000, '.1f')}</td>"
        f"<td>{cell(r.get('test_devi_f_median_eV_per_A'))}</td>"
        f"<td>{cell(r.get('test_max_force_error_median_eV_per_A'))}</td>"
        f"<td>{cell(overconfidence(r), fmt='.1f')}</td></tr>"
        for r in scored)
    return ("<table><tr><th>iteration</th><th>trained on (frames)</th><th>force RMSE "
            "(eV/Å)</th><th>energy RMSE (meV/atom)</th><th>virial RMSE (meV/atom)</th>"
            "<th>median max deviation (eV/Å)</th><th>median max error of the mean "
            "(eV/Å)</th><th>error / deviation</th></tr>" + rows + "</table>"
            f"<p>{scored[0].get('test_n_frames')} held-out frames, never trained on. Force "
            "and energy RMSE: each model's, averaged over the ensemble. The last two "
            "columns compare what the loop trusts (the ensemble's spread) with the error "
            "it stands for: a deviation far below the error (a large last column) means the "
            "ensemble is overconfident there, and its 'accurate' frames are not to be "
            "trusted.</p>")


def _verdict(state: dict[str, Any]) -> str:
    if not state.get("done"):
        return "<p class='verdict'>The loop has not finished.</p>"
    cls = "ok" if state.get("converged") else "bad"
    return f"<p class='verdict {cls}'>{html.escape(str(state.get('reason', '')))}</p>"


def render_report(state: dict[str, Any], table_rows: list[dict[str, Any]],
                  curves: dict[int, list[np.ndarray]], devis: dict[int, np.ndarray], out: Path,
                  title: str = "concurrent learning", cost_line: str | None = None) -> Path:
    """One self-contained HTML file: the verdict and held-out error first; then the
    iterations table, learning curves and model deviations per iteration (when given),
    ratios and data growth over iterations."""
    import matplotlib

    matplotlib.use("Agg")
    history = state.get("history", [])
    images = _diagnostic_plots(history, curves, devis)
    held_out = _held_out_plot(history)
    table = format_table(table_rows, state)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
             "pre{background:#f4f4f4;padding:1em;overflow-x:auto}"
             ".verdict{font-size:1.2em;padding:.6em;border-left:6px solid #888}"
             ".ok{border-color:#2a2;background:#efe}.bad{border-color:#c22;background:#fee}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;"
             "text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", _verdict(state),
             "<h2>Held-out error by iteration</h2>", _held_out_table(history)]
    if cost_line:
        parts.append(f"<p>Cost of the check: {html.escape(cost_line)}.</p>")
    if held_out:
        parts.append(f"<img alt='held-out error against training frames' src='{held_out}'>")
    parts += ["<h2>Diagnostics</h2>",
              f"<p>{len(history)} iterations finished.</p>",
              "<h3>Iterations</h3>", f"<pre>{html.escape(table)}</pre>"]
    for caption, uri in images:
        parts += [f"<h3>{html.escape(caption)}</h3>", f"<img alt='{html.escape(caption)}' "
                  f"src='{uri}'>"]
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out


def _diagnostic_plots(history: list[dict[str, Any]], curves: dict[int, list[np.ndarray]],
                      devis: dict[int, np.ndarray]) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    images: list[tuple[str, str]] = []
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        cmap = plt.get_cmap("viridis")
        for k, (it, models) in enumerate(sorted(curves.items())):
            for m, rows in enumerate(models):
                ax.semilogy(rows[:, 0], rows[:, 1], color=cmap(k / max(1, len(curves) - 1)),
                            lw=1, label=f"iter {it}" if m == 0 else None)
        ax.set_xlabel("training step")
        ax.set_ylabel("force RMSE, training batch (eV/Å)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        images.append(("Learning curves (every model, per iteration)", _png(fig)))
    if devis:
        images.append(("Model deviation per iteration", _deviation_plot(history, devis)))
    if history:
        its = [r["iteration"] for r in history]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, color in (("accurate_ratio", "tab:green"), ("candidate_ratio", "tab:orange"),
                           ("failed_ratio", "tab:red")):
            ax1.plot(its, [r[key] for r in history], "o-", color=color,
                     label=key.replace("_", " "))
        ax1.set_ylabel("fraction of explored frames")
        ax1.set_ylim(-0.02, 1.02)
        ax1.legend(fontsize=8)
        ax2.plot(its, np.cumsum([r["n_labelled"] for r in history]), "s-")
        ax2.set_ylabel("labelled frames (cumulative)")
        for ax in (ax1, ax2):
            ax.set_xlabel("iteration")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        images.append(("Ratios over iterations and data growth", _png(fig)))
    return images


def _deviation_plot(history: list[dict[str, Any]], devis: dict[int, np.ndarray]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    finite = np.concatenate([v[np.isfinite(v)] for v in devis.values()])
    hi = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    bins = np.linspace(0, max(hi, 1e-3), 50)
    for it, values in sorted(devis.items()):
        ax.hist(np.clip(values[np.isfinite(values)], 0, bins[-1]), bins=bins,
                histtype="step", label=f"iter {it}")
    f_lo = history[0].get("level_f_lo") if history else None
    if f_lo is not None:
        ax.axvline(f_lo, color="grey", ls=":", label="f_lo (iter 0)")
    ax.set_xlabel("max force model deviation (eV/Å)")
    ax.set_ylabel("frames")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
