"""Architecture and GPU specs (built-in catalog + user-supplied YAML)."""
from llmsim.models.specs import (
    GPUSpec,
    ModelSpec,
    builtin_gpus,
    builtin_models,
    resolve_gpu,
    resolve_model,
)

__all__ = ["GPUSpec", "ModelSpec", "builtin_gpus", "builtin_models", "resolve_gpu", "resolve_model"]
