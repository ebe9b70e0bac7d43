"""Latency-model registry. Adding a cost model = one new file + one line in ``BUILTIN``.

A cost model is a ``LatencyModel`` subclass with a ``kind``, a pydantic ``Config`` (with a
``kind: Literal[...]`` field) and the constructor ``(model, gpu, tp, config)``. The scenario's
``latency:`` section is validated against the ``Config`` of the kind it names. Models outside the
package (the calibration lab's fitted engine models) register through the entry-point group
``llmsim.latency_models`` (``name = "module:Class"``) or by calling ``register`` on import.
"""
from __future__ import annotations

from importlib.metadata import entry_points

from llmsim.latency.base import LatencyConfigBase, LatencyModel
from llmsim.latency.formula import FormulaLatency
from llmsim.latency.profiled import ProfiledLatency
from llmsim.latency.roofline import RooflineLatency

BUILTIN: tuple[type[LatencyModel], ...] = (RooflineLatency, ProfiledLatency, FormulaLatency)
ENTRY_POINT_GROUP = "llmsim.latency_models"

_REGISTRY: dict[str, type[LatencyModel]] = {m.kind: m for m in BUILTIN}
_plugins_loaded = False


def register(model: type[LatencyModel]) -> type[LatencyModel]:
    """Make ``model`` available as ``latency.kind: <model.kind>`` (usable as a decorator)."""
    _REGISTRY[model.kind] = model
    return model


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(ep.load())
        except Exception as e:  # a broken plugin must not break the built-in models
            import warnings
            warnings.warn(f"latency model plugin {ep.name!r} ({ep.value}) failed to load: {e}",
                          stacklevel=2)


def latency_kinds() -> dict[str, type[LatencyModel]]:
    """Every registered cost model by kind (built-ins first, then plugins)."""
    _load_plugins()
    return dict(_REGISTRY)


def latency_class(kind: str) -> type[LatencyModel]:
    kinds = latency_kinds()
    if kind not in kinds:
        raise KeyError(kind)
    return kinds[kind]


def config_class(kind: str) -> type[LatencyConfigBase]:
    return latency_class(kind).Config
