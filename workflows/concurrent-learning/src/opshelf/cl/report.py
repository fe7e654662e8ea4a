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
    from matplotlib.ticker import MaxNLocator

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
    ax1.set_ylabel("held-out force error (eV/Å)")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=8)
    ax2.plot(n, [1000 * r["test_energy_rmse_eV_per_atom"] for r in scored], "o-",
             color="tab:purple")
    ax2.set_xlabel("training frames (init data + labels so far)")
    ax2.set_ylabel("energy RMSE (meV/atom)")
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def verdict_text(state: dict[str, Any]) -> str:
    """'Not converged: <the scheduler's reason>. The last models' held-out error: ...'."""
    if not state.get("done"):
        head = "Not finished: the loop has no final state yet"
    else:
        reason = str(state.get("reason", ""))
        said = "converged" in reason.lower()  # the scheduler's reason names the verdict
        head = reason if said else (
            ("Converged" if state.get("converged") else "Not converged") + f": {reason}")
    scored = [r for r in state.get("history", [])
              if r.get("test_force_rmse_eV_per_A") is not None]
    if not scored:
        return head + ". No held-out set: the models' accuracy is not measured."
    last = scored[-1]
    return (f"{head}. The last models (iteration {last['iteration']}, trained on "
            f"{last.get('n_train_frames')} frames) on {last.get('test_n_frames')} held-out "
            f"frames: force RMSE {last['test_force_rmse_eV_per_A']:.3f} eV/Å, energy RMSE "
            f"{1000 * last['test_energy_rmse_eV_per_atom']:.1f} meV/atom"
            + (f" (f_lo {last['level_f_lo']:.3g} eV/Å)." if last.get("level_f_lo") else "."))


def _verdict(state: dict[str, Any]) -> str:
    cls = "ok" if state.get("done") and state.get("converged") else "bad"
    return f"<p class='verdict {cls}' id='answer'>{html.escape(verdict_text(state))}</p>"


#: the iterations table: (header, row key, format; a callable for derived cells)
_ITERATION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("iteration", "iteration", "d"), ("stage", "stage", "d"),
    ("explored", "n_frames", "d"), ("accurate", "accurate_ratio", ".3f"),
    ("candidate", "candidate_ratio", ".3f"), ("failed", "failed_ratio", ".3f"),
    ("selected", "n_selected", "d"), ("labelled", "n_labelled", "d"),
    ("fp failed", "n_fp_failed", "d"), ("trained on", "n_train_frames", "d"),
    ("held-out F RMSE (eV/Å)", "test_force_rmse_eV_per_A", ".3f"))


def iterations_table(rows: list[dict[str, Any]], state: dict[str, Any]) -> str:
    """One row per iteration, the scheduler's decision in the last column (wrapped, never
    cut off)."""
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        return "-" if value is None else format(value, fmt)

    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in _ITERATION_COLUMNS)
    body = []
    for r in rows:
        conv = ("yes" if r["converged"] else "no") if "converged" in r else "-"
        cells = "".join(f"<td>{cell(r, key, fmt)}</td>" for _, key, fmt in _ITERATION_COLUMNS)
        body.append(f"<tr>{cells}<td>{conv}</td><td class='l'>"
                    f"{html.escape(str(r.get('decision', '')))}</td></tr>")
    end = (f"<p>loop finished: {html.escape(str(state.get('reason', '')))}</p>"
           if state.get("done") else "")
    return (f"<table class='iterations'><tr>{head}<th>converged</th><th class='l'>decision</th>"
            f"</tr>{''.join(body)}</table><p class='note'>explored: frames of the "
            "exploration; accurate, candidate, failed: their fractions by model deviation; "
            "selected, labelled, fp failed: frames sent to, labelled by and failed in the "
            "labelling engine; trained on: frames the iteration's models were trained on."
            f"</p>{end}")


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
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;"
             "padding:0 1em}img{max-width:100%}td.l,th.l{text-align:left}"
             ".iterations{font-size:.85em;width:100%}.iterations td.l{min-width:11em}"
             ".note{color:#555;font-size:.9em}"
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
              "<h3>Iterations</h3>", iterations_table(table_rows, state)]
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


def compare_runs(states: dict[str, dict[str, Any]]) -> str:
    """Several runs side by side (`opshelf report RUN1 RUN2 ...`): each run's verdict and
    last held-out error in a table, and every run's held-out force error against its
    training frames in one plot."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from opshelf.core.report import png_figure, table

    rows = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, state in states.items():
        history = state.get("history", [])
        scored = [r for r in history if r.get("test_force_rmse_eV_per_A") is not None]
        last = scored[-1] if scored else {}
        verdict = ("converged" if state.get("converged") else "not converged") \
            if state.get("done") else "not finished"
        rows.append([name, verdict, len(history), sum(r.get("n_labelled", 0) for r in history),
                     last.get("n_train_frames"), last.get("test_n_frames"),
                     # the digits of the report's own held-out table
                     f"{last['test_force_rmse_eV_per_A']:.3f}" if last else None,
                     f"{1000 * last['test_energy_rmse_eV_per_atom']:.1f}" if last else None,
                     str(state.get("reason", ""))])
        if scored:
            ax.plot([r["n_train_frames"] for r in scored],
                    [r["test_force_rmse_eV_per_A"] for r in scored], "o-", label=name)
    ax.set_xlabel("training frames (init data + labels so far)")
    ax.set_ylabel("held-out force RMSE (eV/Å)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    head = ["run", "verdict", "iterations", "labelled frames", "last models trained on",
            "held-out frames", "held-out force RMSE (eV/Å)", "held-out energy RMSE (meV/atom)",
            "reason"]
    return ("<h2 id='comparison'>Comparison</h2>" + table(head, rows, left=2)
            + png_figure(fig, "held-out force error against training frames, one line per run"))
