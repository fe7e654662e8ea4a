"""One self-contained HTML report of an alloy-properties run: no external file, script or
font; plots are inline SVG (matplotlib), so it renders offline and prints well.

The answer first: how many properties were computed, and per structure the table of every
scalar property (surfaces included) with the interactions side by side (with several, the
relative difference to the reference interaction). Then every failure in one line (its log
below it), and per structure the Cij matrices, EOS curves, surface-energy bars,
stacking-fault curves, phonon bands with the high-symmetry points and DOS, defect energies
per site; the interactions' settings last, as a table.
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
.answer{font-size:1.15em;padding:.6em 1em;border-left:6px solid #888}
.answer.ok{border-color:#2a2;background:#efe}.answer.bad{border-color:#c22;background:#fee;color:#222}
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


#: decimals shown per unit (the digits the methods resolve, not the float's)
DECIMALS = (("(eV/atom)", 3), ("(Å³/atom)", 2), ("(Å)", 3), ("(GPa)", 1), ("(eV)", 3),
            ("(J/m²)", 3), ("(THz)", 2), ("B'", 2), ("ratio", 3))


#: rows of absolute energies (no relative difference: each interaction has its own zero)
ABSOLUTE = ("E (eV/atom)", "E0 (eV/atom)")


def decimals_of(label: str) -> int:
    """Decimals of a quantity, from the unit in its label ('B (GPa), EOS' -> 1)."""
    return next((d for unit, d in DECIMALS if unit in label), 3)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


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
def property_rows(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str]
                  ) -> list[tuple[str, dict[str, float | None]]]:
    """The scalar rows (results.SCALARS) and one row per surface (Miller index), with the
    lowest-energy surface named."""
    rows = scalar_rows({n: per.get(n, {}) for n in names})
    surfaces = {n: per.get(n, {}).get("surface", {}).get("surface_energies_J_per_m2", {})
                for n in names}
    for index in sorted({k for values in surfaces.values() for k in values}):
        rows.append((f"surface ({index}) (J/m²)",
                     {n: surfaces[n].get(index) for n in names}))
    return rows


def scalar_table(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str],
                 reference: str) -> str:
    """Every scalar property, one column per interaction; with several interactions the
    relative difference to the reference interaction beside each value."""
    rows = property_rows(per, names)
    if not rows:
        return ""
    compare = len(names) > 1

    def diff(label: str, value: float | None, ref: float | None, digits: int) -> str:
        # absolute energies: each interaction has its own zero; a reference ~0: no ratio
        if label.startswith(ABSOLUTE) or ref is None or abs(ref) < 10 ** -digits:
            return ""
        return _diff(value, ref)

    head = "".join(f"<th>{html.escape(n)}{' (reference)' if compare and n == reference else ''}"
                   "</th>" for n in names)
    body = []
    for label, values in rows:
        digits = decimals_of(label)
        cells = "".join(
            f"<td>{_fmt(values[n], digits)}"
            f"{diff(label, values[n], values.get(reference), digits) if compare and n != reference else ''}"
            "</td>" for n in names)
        body.append(f"<tr><td class='l'>{html.escape(label)}</td>{cells}</tr>")
    note = (f"<p class='diff'>in brackets: relative difference to {html.escape(reference)}</p>"
            if compare else "")
    return f"<table><tr><th class='l'>quantity</th>{head}</tr>{''.join(body)}</table>{note}"


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
                text = _fmt(cij[i, j], 1)
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


def read_band_yaml(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[float, str]],
                                         list[int]]:
    """(distances, frequencies [q, band] THz, [(distance, label)], points per segment) of
    phonopy's band.yaml (labels only where phonopy wrote them)."""
    import yaml

    data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    points = data["phonon"]
    distances = np.array([p["distance"] for p in points])
    frequencies = np.array([[b["frequency"] for b in p["band"]] for p in points])
    ticks = [(p["distance"], p["label"]) for p in points if "label" in p]
    return distances, frequencies, ticks, list(data.get("segment_nqpoint") or [len(points)])


def band_ticks(distances: np.ndarray, segment_nqpoint: list[int], band_path: list[str]
               ) -> list[tuple[float, str]]:
    """(distance, label) at every segment end of a band structure: phonopy's band.yaml keeps
    the segment lengths, the result its `band_path` (start, end label per segment); where two
    segments meet at different points the label reads 'U|K'."""
    ticks: list[tuple[float, str]] = []
    first = 0
    for i, n in enumerate(segment_nqpoint):
        if 2 * i + 1 >= len(band_path):
            break
        start, end = band_path[2 * i], band_path[2 * i + 1]
        if not ticks:
            ticks.append((float(distances[first]), start))
        elif ticks[-1][1] != start:
            ticks[-1] = (ticks[-1][0], f"{ticks[-1][1]}|{start}")
        first += n
        ticks.append((float(distances[first - 1]), end))
    return [(x, "Γ" if label in ("G", "GAMMA") else label) for x, label in ticks]


def phonon_plot(per: Mapping[str, Mapping[str, dict[str, Any]]], names: list[str],
                structure_dir: Path) -> str:
    """Phonon bands with the high-symmetry points named and, beside them, the density of
    states, every interaction overlaid."""
    bands = {}
    for name in names:
        phonon = per.get(name, {}).get("phonon")
        path = structure_dir / name / "phonon" / str((phonon or {}).get("band_file", ""))
        if phonon and path.is_file():
            bands[name] = (*read_band_yaml(path), phonon)
    if not bands:
        return ""
    plt = _pyplot()
    fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(8, 4.2), sharey=True,
                                     gridspec_kw={"width_ratios": [3, 1]})
    ticks: list[tuple[float, str]] = []
    for index, (name, (distances, frequencies, labels, nq, phonon)) in enumerate(bands.items()):
        lines = ax.plot(distances, frequencies, "-", color=f"C{index}", lw=1)
        lines[0].set_label(name)
        ticks = ticks or labels or band_ticks(distances, nq, phonon.get("band_path", []))
        dos = phonon.get("dos") or {}
        if dos.get("frequency_THz"):
            ax_dos.plot(dos["states_per_THz"], dos["frequency_THz"], color=f"C{index}", lw=1)
    for x, _ in ticks:
        ax.axvline(x, color="#999", lw=0.6)
    if ticks:
        ax.set_xticks([x for x, _ in ticks], [label.replace("GAMMA", "Γ") for _, label in ticks])
    ax.axhline(0, color="#999", lw=0.6)
    ax.set_xlim(min(d[0][0] for d in bands.values()), max(d[0][-1] for d in bands.values()))
    ax.set_xlabel("wave vector (high-symmetry path)")
    ax.set_ylabel("frequency (THz)")
    ax.legend(fontsize=8)
    ax_dos.set_xlabel("DOS (states/THz)")
    ax_dos.set_xlim(left=0)
    fig.tight_layout()
    return _figure(_svg(fig), "phonon bands and density of states (phonopy, finite "
                   "displacements)")


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
        f"{html.escape(f['property'])}</b>: {html.escape(first_line(f['reason']))}"
        f"<details><summary>log</summary><pre>{html.escape(f['reason'])}</pre></details></li>"
        for f in failures)
    return f"<h2 class='bad' id='failures'>Failures ({len(failures)})</h2><ul>{items}</ul>"


def first_line(reason: str) -> str:
    """The line that says why: the last error line of a log tail, else its last line."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["no reason recorded"])[-1][:240]


def answer_line(results: Mapping[str, Any]) -> tuple[str, bool]:
    """'7 properties computed for 1 structure with 1 interaction; none failed.' and whether
    every property was computed."""
    n_done = sum(len(blocks) for per in results["results"].values() for blocks in per.values())
    failures = results.get("failures", [])
    n_s, n_i = len(results["structures"]), len(results["interactions"])
    text = (f"{n_done} of {n_done + len(failures)} properties computed for {n_s} "
            f"structure{'s' if n_s != 1 else ''} with {n_i} interaction"
            f"{'s' if n_i != 1 else ''}; ")
    text += (f"{len(failures)} failed (listed below)." if failures else "none failed.")
    return text, not failures


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested engine settings as (dotted key, value) rows: potential.files.Cu = Cu_u3.eam."""
    rows: list[tuple[str, str]] = []
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            rows += flat_settings(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", "{}" if isinstance(value, Mapping) else str(value)))
    return rows


def settings_table(interactions: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, info in interactions.items():
        items = flat_settings(info.get("settings", {})) or [("", "(defaults)")]
        for i, (key, value) in enumerate(items):
            lead = (f"<td class='l' rowspan='{len(items)}'>{html.escape(name)}</td><td class='l' "
                    f"rowspan='{len(items)}'>{html.escape(info['engine'])}</td>") if i == 0 else ""
            rows.append(f"<tr>{lead}<td class='l'><code>{html.escape(key)}</code></td>"
                        f"<td class='l'>{html.escape(value)}</td></tr>")
    return ("<h2 id='settings'>Settings</h2><table><tr><th class='l'>interaction</th>"
            "<th class='l'>engine</th><th class='l'>setting</th><th class='l'>value</th></tr>"
            + "".join(rows) + "</table>")


def render_report(results: Mapping[str, Any], results_dir: Path) -> str:
    """The answer first (what was computed, the property table of every structure), then
    failures, then per structure the elastic tensors, plots and defects; settings last."""
    names = list(results["interactions"])
    reference = results.get("reference_interaction") or names[0]
    structures = results["structures"]
    text, ok = answer_line(results)
    parts = [f"<h1>Alloy properties: {html.escape(', '.join(structures))} with "
             f"{html.escape(', '.join(names))}</h1>",
             f"<p class='answer {'ok' if ok else 'bad'}' id='answer'>{html.escape(text)}</p>",
             "<h2 id='properties'>Properties</h2>"]
    for structure, info in structures.items():
        parts.append(f"<h3>{html.escape(structure)}: {html.escape(info['formula'])} "
                     f"({info['n_atoms']} atoms)</h3>")
        parts.append(scalar_table(results["results"].get(structure, {}), names, reference))
    parts.append(failures_section(list(results.get("failures", []))))
    for structure in structures:
        per = results["results"].get(structure, {})
        parts.append(f"<h2>{html.escape(structure)}: details</h2>")
        parts.append(elastic_tables(per, names, reference))
        plots = [eos_plot(per, names), surface_plot(per, names),
                 stacking_fault_plot(per, names),
                 phonon_plot(per, names, results_dir / structure)]
        parts.append("<div class='plots'>" + "".join(p for p in plots if p) + "</div>")
        parts.append(defect_table(per, names))
    parts.append(settings_table(results["interactions"]))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>opshelf alloy report</title><style>" + STYLE + "</style></head><body>"
            + "".join(p for p in parts if p) + "</body></html>")


def write_report(results: Mapping[str, Any], results_dir: Path, path: Path) -> Path:
    path.write_text(render_report(results, results_dir), encoding="utf-8")
    return path


def compare_runs(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Several runs side by side (`opshelf report RUN1 RUN2 ...`): per structure, one
    property table whose columns are every run's interactions ('run: interaction'), with
    the relative difference to the first column."""
    structures = list(dict.fromkeys(s for results in runs.values() for s in results["structures"]))
    parts = ["<h2 id='comparison'>Comparison</h2>"]
    for structure in structures:
        per: dict[str, dict[str, Any]] = {}
        for run, results in runs.items():
            for interaction, blocks in results["results"].get(structure, {}).items():
                per[f"{run}: {interaction}"] = blocks
        if per:
            names = list(per)
            parts += [f"<h3>{html.escape(structure)}</h3>", scalar_table(per, names, names[0])]
    return "".join(parts)
