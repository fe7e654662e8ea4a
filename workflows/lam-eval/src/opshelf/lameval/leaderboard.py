"""The leaderboard: one row per model from the per-model results; JSON, CSV and HTML.

Rows carry the data fingerprints (sha256 of each data set's files): two leaderboards are
comparable when their fingerprints are equal.
"""

from __future__ import annotations

import base64
import csv
import html
import io
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
)


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
    if "efficiency" in result:
        row["us_per_atom_per_step"] = result["efficiency"]["us_per_atom_per_step"]
        row["efficiency_score"] = result["efficiency"]["efficiency_score"]
        row["device"] = result["efficiency"]["device"]
    return row


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
def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _parity_plot(result: dict[str, Any], name: str) -> str | None:
    """Energy and force parity of every data set the model was scored on."""
    fig, (ax_e, ax_f) = _pyplot().subplots(1, 2, figsize=(9, 4))
    for ds_name, data in result["accuracy"]["datasets"].items():
        if data["status"] != "succeeded":
            continue
        ax_e.plot(*data["parity"]["energy_eV_per_atom"], "o", ms=4, label=ds_name)
        ax_f.plot(*data["parity"]["force_eV_per_A"], ".", ms=3, label=ds_name)
    for ax, what in ((ax_e, "energy (eV/atom, shifted)"), (ax_f, "force component (eV/Å)")):
        lims = [*ax.get_xlim(), *ax.get_ylim()]
        ax.plot([min(lims), max(lims)], [min(lims), max(lims)], "k-", lw=0.8)
        ax.set_xlabel(f"reference {what}")
        ax.set_ylabel(f"{name} {what}")
    ax_e.legend(fontsize=7)
    fig.suptitle(f"{name}: parity")
    fig.tight_layout()
    return _png(fig)


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
        ax.plot(v, e - d["e0_eV_per_atom"], "o", label=name)
        ax.plot(grid, birchmurnaghan(grid, 0.0, ref["b0_GPa"] * GPa, ref["b0_prime"],
                                     ref["v0_A3_per_atom"]), "k--", label="WIEN2k")
        ax.set_title(f"{element}: Δ {d['delta_meV_per_atom']:.1f} meV/atom", fontsize=9)
        ax.set_xlabel("V (Å³/atom)")
        ax.set_ylabel("E - E0 (eV/atom)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _drift_plot(result: dict[str, Any], name: str) -> str | None:
    """NVE total-energy drift of every MD run."""
    fig, ax = _pyplot().subplots(figsize=(6, 3.5))
    for label, run in result["md"]["runs"].items():
        if run.get("times_ps"):
            e = np.array(run["energy_eV_per_atom"])
            ax.plot(run["times_ps"], 1000 * (e - e[0]), label=f"{label} ({run['status']})")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("E_total - E_total(0) (meV/atom)")
    ax.set_title(f"{name}: NVE energy drift")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


#: the plot of each task's results, in report order
PLOTS: dict[str, Callable[[dict[str, Any], str], str | None]] = {
    "accuracy": _parity_plot, "delta": _eos_plot, "md": _drift_plot}


def _plots(result: dict[str, Any]) -> list[str]:
    name = result["model"]["name"]
    images = [plot(result, name) for task, plot in PLOTS.items() if task in result]
    return [image for image in images if image is not None]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


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
        cells = [row["domain"], row["domain_error"], row["dataset"], row["status"],
                 *(row[k] for k, _ in DATASET_COLUMNS)]
        out.append("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in cells) + "</tr>")
    return "<p>Accuracy per domain and data set:</p>" + "".join(out) + "</table>"


def render_html(board: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    """One self-contained page (plots as base64 PNG): renders offline."""
    headers = dict(COLUMNS)
    table = ["<table><tr>" + "".join(f"<th>{html.escape(headers[k])}</th>"
                                     for k in board["columns"]) + "</tr>"]
    for row in board["models"]:
        table.append("<tr>" + "".join(f"<td>{_cell(row.get(k))}</td>"
                                      for k in board["columns"]) + "</tr>")
    table.append("</table>")
    prints = "".join(f"<li><code>{html.escape(n)}</code> sha256 {h[:16]}…</li>"
                     for n, h in board["data_fingerprints"].items())
    sections = []
    for result in results:
        failures = []
        for task in ("accuracy", "delta", "properties", "md"):
            items = result.get(task, {})
            for key in ("datasets", "elements", "runs"):
                for label, item in items.get(key, {}).items():
                    if isinstance(item, dict) and item.get("status") == "failed":
                        failures.append(f"<li>{task} {html.escape(label)}: "
                                        f"{html.escape(item['reason'])}</li>")
        sections.append(f"<h2>{html.escape(result['model']['name'])}</h2>"
                        + _breakdown_table(result) + "".join(_plots(result))
                        + (f"<p>Failures:</p><ul>{''.join(failures)}</ul>" if failures else ""))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>opshelf lameval"
            f"</title><style>{style}</style></head><body><h1>Large-atomic-model evaluation</h1>"
            f"{''.join(table)}<p>Data fingerprints (runs compare when these match):</p>"
            f"<ul>{prints}</ul>{''.join(sections)}</body></html>\n")
