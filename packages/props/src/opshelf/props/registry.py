"""Every property by its `type`, and the discriminated unions of their parameters and of
their context records."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from opshelf.core.config import validate_into
from opshelf.core.errors import ConfigError
from opshelf.props.base import Property
from opshelf.props.defects import (
    Interstitial,
    InterstitialContext,
    InterstitialParams,
    Vacancy,
    VacancyContext,
    VacancyParams,
)
from opshelf.props.elastic import Elastic, ElasticContext, ElasticParams
from opshelf.props.eos import Eos, EosContext, EosParams
from opshelf.props.gamma_surface import GammaSurface, GammaSurfaceContext, GammaSurfaceParams
from opshelf.props.phonon import Phonon, PhononContext, PhononParams
from opshelf.props.relax import Relax, RelaxContext, RelaxParams
from opshelf.props.stacking_fault import StackingFault, StackingFaultContext, StackingFaultParams
from opshelf.props.surface import Surface, SurfaceContext, SurfaceParams

PROPERTIES: dict[str, type[Property]] = {
    cls.type: cls
    for cls in (Relax, Eos, Elastic, Vacancy, Interstitial, Surface, StackingFault,
                GammaSurface, Phonon)
}

PropertyParams = Annotated[
    RelaxParams | EosParams | ElasticParams | VacancyParams | InterstitialParams
    | SurfaceParams | StackingFaultParams | GammaSurfaceParams | PhononParams,
    Field(discriminator="type"),
]

#: context.json of any property, read by its `type`
PropertyContextRecord = Annotated[
    RelaxContext | EosContext | ElasticContext | VacancyContext | InterstitialContext
    | SurfaceContext | StackingFaultContext | GammaSurfaceContext | PhononContext,
    Field(discriminator="type"),
]
CONTEXT_RECORD: TypeAdapter[Any] = TypeAdapter(PropertyContextRecord)


def get_property(type_name: str) -> Property:
    """The property object (make, run, post) of a type name, e.g. 'eos'; ConfigError naming
    the known types for an unknown one."""
    try:
        return PROPERTIES[type_name]()
    except KeyError:
        raise ConfigError(f"unknown property type {type_name!r}; known: "
                          f"{sorted(PROPERTIES)}") from None


def parse_params(data: Any, where: str = "property") -> Any:
    """A params dict (with its `type`) -> the typed params; ConfigError naming bad keys."""
    if isinstance(data, tuple(p.Params for p in PROPERTIES.values())):
        return data
    if not isinstance(data, dict) or "type" not in data:
        raise ConfigError(f"{where}: a mapping with a 'type' key, one of {sorted(PROPERTIES)}")
    prop = get_property(str(data["type"]))
    return validate_into(prop.Params, data, where=f"{where} ({data['type']})")


def params_schema() -> dict[str, Any]:
    return TypeAdapter(PropertyParams).json_schema()
