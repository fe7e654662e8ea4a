"""opshelf-props' elastic constants and EOS with CHGNet on fcc Cu (through opshelf-lameval's
`chgnet` model entry point on core's ASE engine; weights ship in the chgnet wheel).

CHGNet's cu-compare elastic constants (C11 216, C12 185 GPa: B_el = 196 GPa) looked
inconsistent with its EOS B0 (137 GPa over +-15 % in volume). Measured (issue note, session 3):
CHGNet's stress is -dE/dV of its own energy to ~0.02 GPa and float32 noise in the stress only
matters below ~1e-5 strain, the reference cell is relaxed to < 0.001 GPa; but the curvature of
CHGNet's E(V) oscillates with strain (local B = -V dP/dV between ~50 and ~235 GPa within +-3 %
linear strain), so every modulus depends on the strain range it is fitted over. Compared over
the same range, elastic constants and EOS agree; the linearity checks flag the dependence."""

from __future__ import annotations

from typing import Any

import pytest
from ase.build import bulk

from opshelf.core.testing import require_engine

CHGNET = {"name": "ase", "settings": {"calculator": "chgnet", "kwargs": {"device": "cpu"},
                                      "probe_elements": False}}


@pytest.fixture(scope="module")
def cu_chgnet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Relaxed fcc Cu (cell to fmax 1e-4 eV/A), elastic at m = 0.005 and 0.01, EOS over
    +-0.5 % (the volume range of m = 0.005) and +-15 % (cu-compare's)."""
    require_engine("py:chgnet")
    require_engine("py:opshelf.lameval")  # the `chgnet` entry point of opshelf.models
    import torch

    from opshelf.props import compute_properties

    # one thread: with torch's default (every core) this fixture took 166 s, with one 22 s
    # (2-core machine, load ~8 both times)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return compute_properties(
            bulk("Cu", "fcc", a=3.6, cubic=True), CHGNET,
            [{"type": "elastic"},
             {"type": "elastic", "normal_strain": 0.01, "shear_strain": 0.01},
             {"type": "eos", "volume_ratio_min": 0.995, "volume_ratio_max": 1.005,
              "n_points": 7},
             {"type": "eos", "volume_ratio_min": 0.85, "volume_ratio_max": 1.15,
              "n_points": 9}],
            tmp_path_factory.mktemp("props-cu-chgnet"),
            relax={"relax_cell": True, "fmax_eV_per_A": 1e-4})
    finally:
        torch.set_num_threads(threads)


def test_reference_cell_is_unstressed(cu_chgnet: dict[str, dict[str, Any]]) -> None:
    # a pre-stress biases a stress-strain fit by ~its size; measured 0.0005 GPa
    for stress in cu_chgnet["elastic"]["reference_stress_GPa"]:
        assert max(abs(s) for s in stress) < 0.01


def test_elastic_bulk_modulus_equals_eos_at_matching_range(
        cu_chgnet: dict[str, dict[str, Any]]) -> None:
    elastic, eos = cu_chgnet["elastic"], cu_chgnet["eos"]
    b_elastic = (elastic["c11_GPa"] + 2 * elastic["c12_GPa"]) / 3
    # measured (chgnet 0.4.2, model 0.3.0, torch 2.13 CPU): B_el 196.2 GPa at m = 0.005;
    # EOS B0 198.0 GPa over +-0.5 % (7 points; 197.7 with 11). Uniaxial and hydrostatic
    # strains sample the oscillating curvature along different paths: 2 %
    assert b_elastic == pytest.approx(eos["bulk_modulus_GPa"], rel=0.02)
    # m = 0.005 is far above the float32 noise (stress central differences give C11 222 GPa
    # from 1e-4 to 1e-3 strain): C11/C12/C44 measured 217.1 / 185.8 / 55.5 GPa
    assert elastic["c11_GPa"] == pytest.approx(217.1, abs=3)
    assert elastic["c12_GPa"] == pytest.approx(185.8, abs=3)
    assert elastic["c44_GPa"] == pytest.approx(55.5, abs=2)


def test_strain_range_dependence_is_flagged(cu_chgnet: dict[str, dict[str, Any]]) -> None:
    """What made cu-compare's numbers look inconsistent, reported by the results themselves."""
    from opshelf.props.elastic import STRAIN_DEPENDENCE_WARNING
    from opshelf.props.eos import RANGE_DEPENDENCE_WARNING

    # Cij from +-0.5 % and from +-1 % strains: measured 0.9 % and 4.8 % of C11 apart
    assert cu_chgnet["elastic"]["strain_dependence_relative"] < STRAIN_DEPENDENCE_WARNING
    assert cu_chgnet["elastic-2"]["strain_dependence_relative"] > STRAIN_DEPENDENCE_WARNING
    # B0 over +-15 % vs its inner half (+-7.5 %): measured 136.6 vs 146.3 GPa (9 points;
    # 136.7 vs 153.8 with 13)
    wide = cu_chgnet["eos-2"]
    assert wide["bulk_modulus_GPa"] == pytest.approx(137, abs=5)  # FIELD-NOTES' CHGNet B
    assert wide["bulk_modulus_range_dependence_relative"] > RANGE_DEPENDENCE_WARNING
    # and the elastic B at m = 0.005 is far above the wide-range EOS B (measured 196 vs 137)
    assert cu_chgnet["elastic"]["bulk_modulus_vrh_GPa"] > wide["bulk_modulus_GPa"] + 40
