"""Errors caused by the user's input: the CLI prints them as one line and exits with code 2."""


class InputError(ValueError):
    pass
