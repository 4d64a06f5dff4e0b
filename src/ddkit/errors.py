"""User-facing errors: the CLI prints them as one line, never as a traceback."""


class DDKitError(Exception):
    """A problem with the user's input or environment, stated with the fix."""
