"""The leaderboard: one row per model from the per-model results; JSON, CSV and HTML.

Rows carry the data fingerprints (sha256 of each data set's files): two leaderboards are
comparable when their fingerprints are equal.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: leaderboard columns: (key, header); lower is better unless the header says so
COLUMNS = (
    ("model", "model"),
    ("calculator", "calculator"),
    ("generalizability_error", "M_FF (0 best, 1 dummy)"),
    ("energy_rmse_meV_per_atom", "energy RMSE meV/atom"),
    ("force_rmse_meV_per_A", "force RMSE meV/Å"),
    ("virial_rmse_meV_per_atom", "virial RMSE meV/atom"),
    ("mean_delta_meV_per_atom", "Delta meV/atom"),
    ("properties_mean_abs_relative_error", "properties |rel. error|"),
    ("instability", "M_IS (0 stable)"),
    ("us_per_atom_per_step", "µs/atom/step"),
    ("efficiency_score", "M_E (higher faster)"),
    ("accuracy_structs_per_s", "eval structs/s (higher faster)"),
    ("n_failed_tasks", "failed tasks"),
)

#: one sentence per leaderboard column: what it answers and how it is computed
DEFINITIONS = {
    "generalizability_error": "M_FF, the generalizability error (LAMBench): each data set's "
    "energy (per atom, after a per-element shift), force and virial RMSE divided by a dummy "
    "model's (energy from the composition alone, zero forces and virials) and capped at 1, "
    "log-averaged per domain with weights 0.45/0.45/0.1, then averaged over domains; 0 is "
    "perfect, 1 no better than the dummy, and a failed data set counts as 1.",
    "energy_rmse_meV_per_atom": "Energy RMSE per atom against the reference labels after a "
    "per-element least-squares shift (so models with other reference energies compare), "
    "averaged over the data sets the model succeeded on.",
    "force_rmse_meV_per_A": "Force-component RMSE against the reference labels, averaged over "
    "the data sets the model succeeded on.",
    "virial_rmse_meV_per_atom": "Virial RMSE per atom, averaged over the data sets with "
    "virial labels that the model succeeded on.",
    "mean_delta_meV_per_atom": "Delta gauge between the model's equation of state and "
    "WIEN2k's all-electron PBE one, averaged over the elements that succeeded (all-electron "
    "codes agree to about 1 meV/atom).",
    "properties_mean_abs_relative_error": "Mean |relative error| of the computed properties "
    "(lattice constant, elastic constants, ...) against the shipped reference values.",
    "instability": "M_IS, the instability (LAMBench): max(0, log10(NVE energy drift / 5e-4 "
    "eV/atom/ps)), averaged over the MD runs; 0 is stable, 5 a run that blew up or failed.",
    "us_per_atom_per_step": "Time of one energy-and-forces call per atom on this machine, in "
    "the largest cell timed (lower is faster).",
    "efficiency_score": "M_E, the efficiency score (LAMBench): 100 µs/atom divided by the "
    "time per atom per step; higher is faster.",
    "accuracy_structs_per_s": "Structures evaluated per second in the accuracy task (model "
    "loading excluded).",
    "n_failed_tasks": "Tasks (a data set, an element's EOS, an MD run) the model could not "
    "do; their effect on each score is said under the model's name below.",
}

STYLE = (".failed{color:#b00;font-weight:bold}#leaderboard{font-size:.85em}"
         "#leaderboard td:first-child{white-space:nowrap;text-align:left}")

#: significant digits shown per column (the JSON and CSV keep every digit)
DIGITS = {"generalizability_error": 3, "instability": 2, "efficiency_score": 2}

#: what a failed task of each kind does to the scores
CONSEQUENCE = {
    "accuracy": "scored as the dummy model (1) in M_FF, left out of the RMSE averages",
    "delta": "left out of the mean Delta",
    "properties": "left out of the properties error",
    "md": "scored 5 (failed) in M_IS",
}


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def leaderboard_row(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one model's results (None where a task did not run)."""
    model = result["model"]
    row: dict[str, Any] = {key: None for key, _ in COLUMNS}
    row.update(model=model["name"], calculator=model["calculator"])
    if "accuracy" in result:
        acc = result["accuracy"]
        done = [d for d in acc["datasets"].values() if d["status"] == "succeeded"]
        row["generalizability_error"] = acc["generalizability_error"]
        for key in ("energy_rmse_meV_per_atom", "force_rmse_meV_per_A",
                    "virial_rmse_meV_per_atom"):
            row[key] = _mean([d.get(key) for d in done])
        n = sum(d["n_frames"] for d in done)
        seconds = sum(d["wall_s"] for d in done)
        row["accuracy_structs_per_s"] = n / seconds if seconds else None
        row["n_failed_datasets"] = len(acc["datasets"]) - len(done)
    if "delta" in result:
        row["mean_delta_meV_per_atom"] = result["delta"]["mean_delta_meV_per_atom"]
        row["n_failed_delta"] = result["delta"]["n_failed"]
    if "properties" in result:
        row["properties_mean_abs_relative_error"] = result["properties"][
            "mean_abs_relative_error"]
    if "md" in result:
        row["instability"] = result["md"]["instability"]
        row["n_failed_md"] = result["md"]["n_failed"]
    row["n_failed_tasks"] = len(failed_tasks(result))
    if "efficiency" in result:
        row["us_per_atom_per_step"] = result["efficiency"]["us_per_atom_per_step"]
        row["efficiency_score"] = result["efficiency"]["efficiency_score"]
        row["device"] = result["efficiency"]["device"]
    return row


def failed_tasks(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(task, item, reason) of every task item of one model that failed."""
    found = []
    for task in CONSEQUENCE:
        for key in ("datasets", "elements", "runs"):
            for label, item in result.get(task, {}).get(key, {}).items():
                if isinstance(item, dict) and item.get("status") == "failed":
                    found.append((task, label, str(item.get("reason", "no reason recorded"))))
    return found


def n_tasks(result: dict[str, Any]) -> int:
    """How many task items (data sets, elements, MD runs) the model was given."""
    return sum(len(result.get(task, {}).get(key, {})) for task in CONSEQUENCE
               for key in ("datasets", "elements", "runs"))


def failure_lines(result: dict[str, Any]) -> list[str]:
    """One line per kind of task that failed: which items, why (each distinct reason once,
    its last line only) and what it does to the scores."""
    by_task: dict[str, list[tuple[str, str]]] = {}
    for task, label, reason in failed_tasks(result):
        by_task.setdefault(task, []).append((label, reason))
    lines = []
    for task, items in by_task.items():
        reasons = list(dict.fromkeys(short_reason(r) for _, r in items))
        lines.append(f"{task} on {', '.join(label for label, _ in items)} failed "
                     f"({'; '.join(reasons)}): {CONSEQUENCE[task]}")
    return lines


def short_reason(reason: str) -> str:
    """'No EMT-potential for Si (NotImplementedError)' from 'NotImplementedError: No
    EMT-potential for Si' (a traceback: its last line)."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no reason recorded"
    kind, sep, message = last.partition(": ")
    text = f"{message} ({kind})" if sep and kind.replace(".", "").isidentifier() else last
    return text if len(text) <= 160 else text[:157] + "..."


def fingerprints(results: Sequence[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for result in results:
        for name, data in result.get("accuracy", {}).get("datasets", {}).items():
            found[name] = data["fingerprint"]
    return found


def make_leaderboard(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    rows = [leaderboard_row(r) for r in results]
    rows.sort(key=lambda r: (r["generalizability_error"] is None,
                             r["generalizability_error"] or 0.0))
    return {"columns": [k for k, _ in COLUMNS], "models": rows,
            "data_fingerprints": fingerprints(results)}


def write_leaderboard(results: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """leaderboard.json, leaderboard.csv, results.json (everything) and report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    board = make_leaderboard(results)
    paths = {"json": out_dir / "leaderboard.json", "csv": out_dir / "leaderboard.csv",
             "results": out_dir / "results.json", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(board, indent=2) + "\n")
    paths["results"].write_text(json.dumps(list(results), indent=1) + "\n")
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=board["columns"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(board["models"])
    paths["html"].write_text(render_html(board, results))
    return paths


# -- the HTML report ------------------------------------------------------------------------------
def _img(fig: Any, caption: str) -> str:
    from opshelf.core.report import png_figure

    return png_figure(fig, caption)


def _pyplot() -> Any:
    from opshelf.core.report import pyplot

    return pyplot()


def _parity_plot(result: dict[str, Any], name: str) -> str | None:
    """Energy parity relative to each data set's mean reference energy per atom (meV/atom:
    absolute energies of Al, Cu and Si span 1400 eV/atom and hide meV errors), and force
    parity, of every data set the model was scored on."""
    fig, (ax_e, ax_f) = _pyplot().subplots(1, 2, figsize=(9.5, 4.2))
    for ds_name, data in result["accuracy"]["datasets"].items():
        if data["status"] != "succeeded":
            continue
        ref, model = (np.asarray(v, dtype=float) for v in data["parity"]["energy_eV_per_atom"])
        mean = ref.mean()
        ax_e.plot(1000 * (ref - mean), 1000 * (model - mean), "o", ms=4, label=ds_name)
        ax_f.plot(*data["parity"]["force_eV_per_A"], ".", ms=3, label=ds_name)
    for ax in (ax_e, ax_f):
        lims = [*ax.get_xlim(), *ax.get_ylim()]
        ax.plot([min(lims), max(lims)], [min(lims), max(lims)], "k-", lw=0.8)
    ax_e.set_xlabel("reference E − ⟨E_ref⟩ of its data set (meV/atom)")
    ax_e.set_ylabel(f"{name} E − ⟨E_ref⟩ (meV/atom, shifted)")
    ax_f.set_xlabel("reference force component (eV/Å)")
    ax_f.set_ylabel(f"{name} force component (eV/Å)")
    ax_e.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _img(fig, f"{name}: parity of energies per atom (each data set relative to its mean "
                "reference energy, after the per-element shift) and forces")


def _eos_plot(result: dict[str, Any], name: str) -> str | None:
    """Each element's E(V) against WIEN2k's Birch-Murnaghan curve (None: no element done)."""
    from ase.eos import birchmurnaghan
    from ase.units import GPa

    elements = [e for e, d in result["delta"]["elements"].items() if d["status"] == "succeeded"]
    if not elements:
        return None
    fig, axes = _pyplot().subplots(1, len(elements), figsize=(3.2 * len(elements), 3.2),
                                   squeeze=False)
    for ax, element in zip(axes[0], elements):
        d = result["delta"]["elements"][element]
        v = np.array(d["volumes_A3_per_atom"])
        e = np.array(d["energies_eV_per_atom"])
        grid = np.linspace(v.min(), v.max(), 100)
        ref = d["wien2k"]
        ax.plot(v, 1000 * (e - d["e0_eV_per_atom"]), "o", label=name)
        ax.plot(grid, 1000 * birchmurnaghan(grid, 0.0, ref["b0_GPa"] * GPa, ref["b0_prime"],
                                            ref["v0_A3_per_atom"]), "k--", label="WIEN2k")
        ax.set_title(f"{element}: Δ {d['delta_meV_per_atom']:.1f} meV/atom", fontsize=9)
        ax.set_xlabel("V (Å³/atom)")
        ax.set_ylabel("E − E0 (meV/atom)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _img(fig, f"{name}: equation of state against WIEN2k (Delta)")


def _drift_plot(result: dict[str, Any], name: str) -> str | None:
    """NVE total-energy drift of every MD run."""
    fig, ax = _pyplot().subplots(figsize=(6, 3.5))
    for label, run in result["md"]["runs"].items():
        if run.get("times_ps"):
            e = np.array(run["energy_eV_per_atom"])
            ax.plot(run["times_ps"], 1000 * (e - e[0]), label=f"{label} ({run['status']})")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("E_total − E_total(0) (meV/atom)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _img(fig, f"{name}: NVE total energy (M_IS)")


#: the plot of each task's results, in report order
PLOTS: dict[str, Callable[[dict[str, Any], str], str | None]] = {
    "accuracy": _parity_plot, "delta": _eos_plot, "md": _drift_plot}


def _plots(result: dict[str, Any]) -> list[str]:
    name = result["model"]["name"]
    images = [plot(result, name) for task, plot in PLOTS.items() if task in result]
    return [image for image in images if image is not None]


def _cell(value: Any, key: str = "") -> str:
    from opshelf.core.report import fmt

    return html.escape(fmt(value, DIGITS.get(key, 3)))


#: per-data-set columns of the domain breakdown: (key, header)
DATASET_COLUMNS = (
    ("n_frames", "frames"),
    ("energy_rmse_meV_per_atom", "energy RMSE meV/atom"),
    ("force_rmse_meV_per_A", "force RMSE meV/Å"),
    ("virial_rmse_meV_per_atom", "virial RMSE meV/atom"),
    ("structs_per_s", "structs/s"),
)


def domain_breakdown(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per data set, grouped by domain (sorted), with the domain's M_k beside it:
    where a model's headline M_FF comes from."""
    accuracy = result.get("accuracy")
    if not accuracy:
        return []
    domain_errors = accuracy.get("domain_errors", {})
    rows = []
    for name, data in accuracy["datasets"].items():
        row = {"domain": data.get("domain", "default"), "dataset": name,
               "domain_error": domain_errors.get(data.get("domain", "default")),
               "status": data["status"]}
        row.update({key: data.get(key) for key, _ in DATASET_COLUMNS})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["domain"], r["dataset"]))


def _breakdown_table(result: dict[str, Any]) -> str:
    rows = domain_breakdown(result)
    if not rows:
        return ""
    heads = ["domain", "M_k (0 best, 1 dummy)", "data set", "status",
             *(h for _, h in DATASET_COLUMNS)]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr>"]
    for row in rows:
        cells = [_cell(row["domain"]), _cell(row["domain_error"], "generalizability_error"),
                 _cell(row["dataset"]), _cell(row["status"]),
                 *(_cell(row[k], k) for k, _ in DATASET_COLUMNS)]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<p>Accuracy per domain and data set:</p>" + "".join(out) + "</table>"


def answer_text(board: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    """'sevennet-0 is the most accurate of 3 models (M_FF 0.294; ...). 5 of 57 tasks failed
    (emt: 5).' The leaderboard's first row, and every failure counted."""
    from opshelf.core.report import fmt

    rows = [r for r in board["models"] if r.get("generalizability_error") is not None]
    text = (f"{rows[0]['model']} is the most accurate of {len(board['models'])} model(s) on "
            f"these data (M_FF {fmt(rows[0]['generalizability_error'])})."
            if rows else f"{len(board['models'])} model(s) evaluated; none has an M_FF.")
    failed = {r["model"]["name"]: len(failed_tasks(r)) for r in results}
    total = sum(n_tasks(r) for r in results)
    if any(failed.values()):
        each = ", ".join(f"{name}: {n}" for name, n in failed.items() if n)
        return f"{text} {sum(failed.values())} of {total} tasks failed ({each}), explained " \
            "below."
    return f"{text} All {total} tasks succeeded."


def render_html(board: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    """One self-contained page (plots as base64 PNG): renders offline. The leaderboard and
    what each column means first, then each model's failures, breakdown and plots."""
    from opshelf.core.report import answer, page

    headers = dict(COLUMNS)
    table = ["<table id='leaderboard'><tr>" + "".join(
        f"<th>{html.escape(headers[k])}</th>" for k in board["columns"]) + "</tr>"]
    for row in board["models"]:
        table.append("<tr>" + "".join(f"<td>{_cell(row.get(k), k)}</td>"
                                      for k in board["columns"]) + "</tr>")
    table.append("</table>")
    definitions = "".join(f"<dt>{html.escape(headers[k])}</dt><dd>{html.escape(text)}</dd>"
                          for k, text in DEFINITIONS.items() if k in board["columns"])
    prints = "".join(f"<li><code>{html.escape(n)}</code> sha256 {h[:16]}…</li>"
                     for n, h in board["data_fingerprints"].items())
    sections = []
    for result in results:
        name = result["model"]["name"]
        lines = failure_lines(result)
        failures = (f"<p class='failed'>{len(failed_tasks(result))} of {n_tasks(result)} tasks "
                    "failed:</p><ul>" + "".join(f"<li>{html.escape(line)}</li>"
                                                 for line in lines) + "</ul>") if lines else ""
        sections.append(f"<h3 id='model-{html.escape(name)}'>{html.escape(name)}</h3>"
                        + failures + _breakdown_table(result)
                        + "<div class='plots'>" + "".join(_plots(result)) + "</div>")
    return page("opshelf lameval", [
        "<h1>Large-atomic-model evaluation</h1>",
        answer(answer_text(board, results), None),
        "<h2 id='leaderboard-title'>Leaderboard</h2>", "".join(table),
        "<p class='note'>Best first by M_FF; lower is better unless the header says "
        "otherwise. Every digit is in leaderboard.csv/.json and results.json.</p>",
        f"<h2 id='metrics'>What each column means</h2><dl>{definitions}</dl>",
        f"<h2 id='models'>Per model</h2>{''.join(sections)}",
        f"<h2 id='data'>Data</h2><p>Data fingerprints (leaderboards compare when these "
        f"match):</p><ul>{prints}</ul>"], STYLE)


def compare_runs(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Several runs side by side (`opshelf report RUN1 RUN2 ...`): one leaderboard of every
    (run, model), best M_FF first, and whether the runs scored the same data."""
    headers = dict(COLUMNS)
    rows = []
    prints = {}
    for run, results in runs.items():
        board = make_leaderboard(results)
        prints[run] = board["data_fingerprints"]
        rows += [{**row, "run": run} for row in board["models"]]
    rows.sort(key=lambda r: (r["generalizability_error"] is None,
                             r["generalizability_error"] or 0.0))
    keys = [k for k, _ in COLUMNS]
    head = "<tr><th>run</th>" + "".join(f"<th>{html.escape(headers[k])}</th>" for k in keys)
    body = "".join("<tr><td>" + html.escape(r["run"]) + "</td>"
                   + "".join(f"<td>{_cell(r.get(k), k)}</td>" for k in keys) + "</tr>"
                   for r in rows)
    same = len({json.dumps(p, sort_keys=True) for p in prints.values()}) == 1
    note = ("The runs scored the same data sets (equal fingerprints): their numbers compare."
            if same else "The runs scored different data sets (fingerprints differ): compare "
            "their numbers with care.")
    return (f"<style>{STYLE}</style><h2 id='comparison'>Comparison</h2>"
            f"<table id='leaderboard'>{head}</tr>{body}"
            f"</table><p class='note'>{note}</p>")
