"""One self-contained HTML report of an alloy-properties run: no external file, script or
font; plots are inline SVG (matplotlib), so it renders offline and prints well.

Per structure, interactions side by side: a table of scalar properties with the relative
difference to the reference interaction, the Cij matrix of each interaction with its
difference, EOS curves overlaid, surface-energy bars, stacking-fault curves, phonon bands,
defect energies per site, and every failure with its reason.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from opshelf.alloy.results import relative_difference, scalar_rows

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}
.diff{color:#666;font-size:.85em}.bad{color:#b00}.plots{display:flex;flex-wrap:wrap;gap:1em}
.plots figure{margin:0}figcaption{font-size:.9em;color:#555}code{background:#f4f4f4}
"""


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline in HTML


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else \
        f"{value:.{digits}f}"


def _diff(value: float | None, reference: float | None) -> str:
    rel = relative_difference(value, reference)
    return "" if rel is None else f' <span class="diff">({rel * 100:+.1f} %)</span>'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text as text: smaller files
    return plt


# -- sections --------------------------------------------------------------------------------
def scalar_table(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str],
                 reference: str) -> str:
    rows = scalar_rows({n: per.get(n, {}) for n in names})
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(n)}{' (reference)' if n == reference else ''}</th>"
                   for n in names)
    body = []
    for label, values in rows:
        cells = "".join(f"<td>{_fmt(values[n])}"
                        f"{_diff(values[n], values.get(reference)) if n != reference else ''}</td>"
                        for n in names)
        body.append(f"<tr><td class='l'>{html.escape(label)}</td>{cells}</tr>")
    return (f"<table><tr><th class='l'>quantity</th>{head}</tr>{''.join(body)}</table>"
            f"<p class='diff'>in brackets: relative difference to {html.escape(reference)}</p>")


def elastic_tables(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str],
                   reference: str) -> str:
    tensors = {n: np.asarray(per[n]["elastic"]["elastic_tensor_voigt_GPa"])
               for n in names if "elastic" in per.get(n, {})}
    if not tensors:
        return ""
    ref = tensors.get(reference)
    parts = ["<h3>Elastic constants C<sub>ij</sub> (GPa, Voigt)</h3>"]
    for name, cij in tensors.items():
        rows = []
        for i in range(6):
            cells = []
            for j in range(6):
                text = f"{cij[i, j]:.1f}"
                if ref is not None and name != reference and abs(ref[i, j]) > 1.0:
                    text += f"<br><span class='diff'>{cij[i, j] - ref[i, j]:+.1f}</span>"
                cells.append(f"<td>{text}</td>")
            rows.append(f"<tr><th>{i + 1}</th>{''.join(cells)}</tr>")
        caption = html.escape(name) + ("" if name == reference or ref is None else
                                       f" (below each: difference to {html.escape(reference)})")
        parts.append(f"<table><caption>{caption}</caption><tr><th></th>"
                     + "".join(f"<th>{j}</th>" for j in range(1, 7)) + "</tr>"
                     + "".join(rows) + "</table>")
    return parts[0] + "<div class='plots'>" + "".join(parts[1:]) + "</div>"


def eos_plot(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str]) -> str:
    curves = {n: per[n]["eos"] for n in names if "eos" in per.get(n, {})}
    if not curves:
        return ""
    from pymatgen.analysis.eos import EOS

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for index, (name, eos) in enumerate(curves.items()):
        v = np.asarray(eos["volumes_A3_per_atom"])
        e = np.asarray(eos["energies_eV_per_atom"])
        color = f"C{index}"
        ax.plot(v, e, "o", color=color, ms=4)
        fit = EOS(eos.get("fit", "birch_murnaghan")).fit(v, e)
        grid = np.linspace(v.min(), v.max(), 200)
        ax.plot(grid, fit.func(grid), "-", color=color,
                label=f"{name}: V0 {eos['v0_A3_per_atom']:.3f} Å³, "
                      f"B {eos['bulk_modulus_GPa']:.1f} GPa")
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend(fontsize=8)
    return _figure(_svg(fig), "equation of state: points calculated, lines the fit")


def surface_plot(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str]) -> str:
    data = {n: per[n]["surface"]["surface_energies_J_per_m2"] for n in names
            if "surface" in per.get(n, {})}
    if not data:
        return ""
    plt = _pyplot()
    labels = sorted({k for values in data.values() for k in values})
    width = 0.8 / len(data)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(labels) * max(1, len(data) / 2) + 2), 4))
    for index, (name, values) in enumerate(data.items()):
        x = np.arange(len(labels)) + (index - (len(data) - 1) / 2) * width
        ax.bar(x, [values.get(k, np.nan) for k in labels], width, label=name)
    ax.set_xticks(range(len(labels)), [f"({k})" for k in labels])
    ax.set_ylabel("surface energy (J/m²)")
    ax.legend(fontsize=8)
    return _figure(_svg(fig), "surface energies (relaxed slabs)")


def stacking_fault_plot(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str]
                        ) -> str:
    data = {n: per[n]["stacking-fault"] for n in names if "stacking-fault" in per.get(n, {})}
    if not data:
        return ""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    kinds = {name: shift_kind(sf) for name, sf in data.items()}
    for name, sf in data.items():
        shifts = np.append(sf["shifts_A"], sf["slip_length_A"])
        gamma = np.append(sf["gsfe_J_per_m2"], sf["gsfe_J_per_m2"][0])
        kind = "" if len(set(kinds.values())) == 1 else f", {kinds[name]}"
        ax.plot(shifts, gamma, "o-", ms=3, label=f"{name} ({sf['slip_system']}{kind})")
    ax.set_xlabel("shift (Å)")
    ax.set_ylabel("fault energy (J/m²)")
    ax.legend(fontsize=8)
    kind = next(iter(kinds.values())) if len(set(kinds.values())) == 1 else \
        "relaxed or rigid: see the legend"
    return _figure(_svg(fig), f"generalized stacking-fault energy ({kind})")


def shift_kind(result: Mapping[str, Any]) -> str:
    """How a stacking-fault result was computed, from its `relaxed` flag."""
    return "relaxed normal to the plane" if result.get("relaxed") else "rigid shifts"


def read_band_yaml(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[float, str]]]:
    """(distances, frequencies [q, band] THz, [(distance, label)]) of phonopy's band.yaml."""
    import yaml

    data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    points = data["phonon"]
    distances = np.array([p["distance"] for p in points])
    frequencies = np.array([[b["frequency"] for b in p["band"]] for p in points])
    ticks = [(p["distance"], p["label"]) for p in points if "label" in p]
    return distances, frequencies, ticks


def phonon_plot(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str],
                structure_dir: Path) -> str:
    bands = {}
    for name in names:
        phonon = per.get(name, {}).get("phonon")
        path = structure_dir / name / "phonon" / str((phonon or {}).get("band_file", ""))
        if phonon and path.is_file():
            bands[name] = read_band_yaml(path)
    if not bands:
        return ""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ticks: list[tuple[float, str]] = []
    for index, (name, (distances, frequencies, name_ticks)) in enumerate(bands.items()):
        lines = ax.plot(distances, frequencies, "-", color=f"C{index}", lw=1)
        lines[0].set_label(name)
        ticks = ticks or name_ticks
    for x, _ in ticks:
        ax.axvline(x, color="#999", lw=0.6)
    if ticks:
        ax.set_xticks([x for x, _ in ticks], [label.replace("GAMMA", "Γ")
                                             for _, label in ticks])
    ax.axhline(0, color="#999", lw=0.6)
    ax.set_xlim(min(d[0][0] for d in bands.values()), max(d[0][-1] for d in bands.values()))
    ax.set_ylabel("frequency (THz)")
    ax.legend(fontsize=8)
    return _figure(_svg(fig), "phonon bands (phonopy, finite displacements)")


def defect_sites(result: Mapping[str, Any]) -> list[tuple[str, float | None, str]]:
    """(site, formation energy eV, details) of a vacancy or interstitial result."""
    if "sites" in result:  # vacancy: one entry per inequivalent site
        return [(f"{s.get('element', '')} #{s.get('site_index', '')}",
                 s.get("formation_energy_eV"), str(s.get("task", ""))) for s in result["sites"]]
    energies = result.get("formation_energies_eV") or {}
    return [(site, energy, "lowest" if site == result.get("lowest_energy_site") else "")
            for site, energy in energies.items()]


def defect_table(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str]) -> str:
    rows = []
    for block in ("vacancy", "interstitial"):
        for name in names:
            result = per.get(name, {}).get(block)
            for site, energy, details in defect_sites(result or {}):
                rows.append(f"<tr><td class='l'>{block}</td><td class='l'>{html.escape(name)}"
                            f"</td><td class='l'>{html.escape(site)}</td><td>{_fmt(energy)}</td>"
                            f"<td class='l'>{html.escape(details)}</td></tr>")
    if not rows:
        return ""
    return ("<h3>Point defects</h3><table><tr><th class='l'>defect</th><th class='l'>"
            "interaction</th><th class='l'>site</th><th>formation energy (eV)</th>"
            "<th class='l'>details</th></tr>" + "".join(rows) + "</table>")


def failures_section(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return ""
    items = "".join(
        f"<li><b>{html.escape(f['structure'])} / {html.escape(f['interaction'])} / "
        f"{html.escape(f['property'])}</b><pre>{html.escape(f['reason'])}</pre></li>"
        for f in failures)
    return f"<h2 class='bad'>Failures ({len(failures)})</h2><ul>{items}</ul>"


def render_report(results: Mapping[str, Any], results_dir: Path) -> str:
    names = list(results["interactions"])
    reference = results.get("reference_interaction") or names[0]
    parts = [f"<h1>Alloy properties: {len(results['structures'])} structure(s), "
             f"{len(names)} interaction(s)</h1>",
             "<table><tr><th class='l'>interaction</th><th class='l'>engine</th>"
             "<th class='l'>settings</th></tr>"]
    for name, info in results["interactions"].items():
        settings = html.escape(str(info.get("settings", {})))
        parts.append(f"<tr><td class='l'>{html.escape(name)}</td><td class='l'>"
                     f"{html.escape(info['engine'])}</td><td class='l'><code>{settings}</code>"
                     "</td></tr>")
    parts.append("</table>")
    parts.append(failures_section(list(results.get("failures", []))))
    for structure, info in results["structures"].items():
        per = results["results"].get(structure, {})
        parts.append(f"<h2>{html.escape(structure)}: {html.escape(info['formula'])} "
                     f"({info['n_atoms']} atoms)</h2>")
        parts.append(scalar_table(per, names, reference))
        parts.append(elastic_tables(per, names, reference))
        plots = [eos_plot(per, names), surface_plot(per, names),
                 stacking_fault_plot(per, names),
                 phonon_plot(per, names, results_dir / structure)]
        parts.append("<div class='plots'>" + "".join(p for p in plots if p) + "</div>")
        parts.append(defect_table(per, names))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>opshelf alloy report</title><style>" + STYLE + "</style></head><body>"
            + "".join(p for p in parts if p) + "</body></html>")


def write_report(results: Mapping[str, Any], results_dir: Path, path: Path) -> Path:
    path.write_text(render_report(results, results_dir), encoding="utf-8")
    return path
