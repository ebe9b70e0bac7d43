"""Errors the CLI prints as one line and exits with code 2 on."""


class InputError(ValueError):
    """Caused by the user's input: names the field, row or option."""


class SimulationStuck(InputError):
    """A scenario on which the simulation cannot progress (a policy waits for something that
    never comes): names the policy, the instance and what is stuck."""
