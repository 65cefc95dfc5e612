"""The errors that mean "bad input", as opposed to a bug.

Every one is a single sentence naming the problem and the fix. The library
raises them in its own words (parameter names such as `seq_len`); only the
command line turns parameter names into flags, in one place
(`profiler.cli.errors`), and prints them with exit code 2.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input or an unusable environment; the message is the whole story, one sentence."""


class ParameterError(InputError):
    """One parameter has a value that cannot work.

    `parameter` is the library's name for it (`seq_len`, `repeat`); the CLI
    shows the matching flag instead. The message reads
    "<parameter> <value> <problem>; <fix>."
    """

    def __init__(self, parameter: str, value: object, problem: str, fix: str = "", quote: bool = True) -> None:
        self.parameter, self.value, self.problem, self.fix, self.quote = parameter, value, problem, fix, quote
        super().__init__(self.sentence(parameter))

    def sentence(self, name: str) -> str:
        """The message with the parameter called `name` (a flag, for the CLI)."""
        # names (a dtype, an attention kernel) are quoted; numbers, paths and devices read plainly
        value = repr(self.value) if self.quote and isinstance(self.value, str) else self.value
        text = f"{name} {value} {self.problem}"
        return f"{text}; {self.fix.rstrip('.')}." if self.fix else f"{text}."
