"""The verdicts of benchmarks/paper_verdicts.py: what counts as a reproduced direction and a
magnitude within 1.5x, and that no llmsim number in it is typed in."""
from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from paper_verdicts import CLAIMS, verdict  # noqa: E402


def test_direction_and_magnitude():
    assert verdict(3.58, 2.24) == ("yes", "no")  # same side of 1, 1.6x short
    assert verdict(1.31, 1.06) == ("yes", "yes")
    assert verdict(1.37, 1.00) == ("no", "yes")  # a tie is not a direction
    assert verdict(9.85, 0.82) == ("no", "no")
    assert verdict(None, 1.5) == ("yes", "n/a")  # a direction-only claim: above 1
    assert verdict(None, 0.49) == ("no", "n/a")
    assert verdict(2.0, float("nan")) == ("n/a", "n/a")


def test_every_llmsim_number_is_computed():
    assert len(CLAIMS) >= 9 and {c.paper for c in CLAIMS} == {
        "UELLM", "DistServe", "BucketServe", "OmniServe"}
    assert all(callable(c.llmsim) for c in CLAIMS)
