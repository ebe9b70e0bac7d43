"""Errors the CLI prints as one line and exits with code 2 on."""
from __future__ import annotations


class InputError(ValueError):
    """Caused by the user's input: names the field, row or option. Always one line: a value
    echoed back with a line break in it (a key, a tag) has the break escaped."""

    def __init__(self, message: object = "") -> None:
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text)


class SimulationStuck(InputError):
    """A scenario on which the simulation cannot progress (a policy waits for something that
    never comes): names the policy, the instance and what is stuck."""
