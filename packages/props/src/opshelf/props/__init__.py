"""opshelf-props: materials properties on any opshelf engine.

Each property is make (structures) -> run (engine tasks) -> post (a pure function):

    from opshelf.props import compute_properties
    results = compute_properties("POSCAR", {"name": "ase", "settings": {"calculator": "emt"}},
                                 [{"type": "eos"}, {"type": "elastic"}], "work/",
                                 relax={"relax_cell": True})

dflow OPs and super-OPs: `opshelf.props.ops` (imports dflow).
"""

from opshelf.props.base import PropertyFailed
from opshelf.props.defects import InterstitialParams, VacancyParams
from opshelf.props.elastic import ElasticParams
from opshelf.props.eos import EosParams
from opshelf.props.ondisk import make_property, post_property
from opshelf.props.phonon import PhononParams
from opshelf.props.registry import PROPERTIES, PropertyParams, get_property, parse_params
from opshelf.props.relax import RelaxParams
from opshelf.props.runner import compute_properties, compute_property
from opshelf.props.stacking_fault import StackingFaultParams
from opshelf.props.surface import SurfaceParams

__all__ = [
    "PROPERTIES",
    "ElasticParams",
    "EosParams",
    "InterstitialParams",
    "PhononParams",
    "PropertyFailed",
    "PropertyParams",
    "RelaxParams",
    "StackingFaultParams",
    "SurfaceParams",
    "VacancyParams",
    "compute_properties",
    "compute_property",
    "get_property",
    "make_property",
    "parse_params",
    "post_property",
]
