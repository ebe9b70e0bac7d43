"""Policy registry. Adding a policy = one new file + one entry in ``POLICIES``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from llmsim.policies.base import EngineLimits, Policy
from llmsim.policies.bucketserve import BucketServePolicy
from llmsim.policies.config import PolicyConfigBase
from llmsim.policies.distserve import DistServeDecodePolicy, DistServePrefillPolicy
from llmsim.policies.hf_cb import HFContinuousBatchingPolicy
from llmsim.policies.omniserve import OmniServePolicy
from llmsim.policies.orca import OrcaPolicy
from llmsim.policies.sarathi import SarathiPolicy
from llmsim.policies.static import StaticPolicy
from llmsim.policies.uellm import UELLMPolicy
from llmsim.policies.vllm import VLLMPolicy

POLICIES: tuple[type[Policy], ...] = (StaticPolicy, OrcaPolicy, VLLMPolicy, SarathiPolicy,
                                      DistServePrefillPolicy, DistServeDecodePolicy,
                                      BucketServePolicy, UELLMPolicy, HFContinuousBatchingPolicy,
                                      OmniServePolicy)

BY_NAME: dict[str, type[Policy]] = {p.name: p for p in POLICIES}

# The scenario's ``policy:`` field: a union discriminated by ``kind``, derived from the tuple.
if TYPE_CHECKING:  # what every member of the union is
    PolicyConfig = PolicyConfigBase
else:
    PolicyConfig = Annotated[Union[tuple(p.Config for p in POLICIES)],  # noqa: UP007 (runtime)
                             Field(discriminator="kind")]


def make_policy(config: PolicyConfigBase, limits: EngineLimits) -> Policy:
    return BY_NAME[config.kind](config, limits)


__all__ = ["BY_NAME", "POLICIES", "EngineLimits", "Policy", "PolicyConfig", "PolicyConfigBase",
           "make_policy"]
