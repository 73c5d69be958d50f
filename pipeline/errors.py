"""User-facing errors: one line that names the problem and, where possible, the fix."""

from __future__ import annotations


class DictuneError(Exception):
    """An error caused by the user's input (config, data, model spec), reported as one line."""


class ConfigError(DictuneError):
    """The config file or an override is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = list(problems)
        joined = "; ".join(self.problems)
        super().__init__(f"{source}: {joined}")
