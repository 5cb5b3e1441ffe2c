"""The one exception type users see: its message names what is wrong and how to fix it."""


class ModelsetError(Exception):
    """Bad input (preset, argument, file). The CLI prints it as one line and exits with 2."""
