"""The one exception type users see: the CLI prints it as a single line and exits with 2."""


class GptclsError(Exception):
    """A problem with the user's input or environment (not a bug in gptcls)."""
