"""Exit codes and error types: one home, imported by every layer and importing nothing of ours.

A ``UserError`` is something the person running quantflow can fix (a spec, a data file, a
model); the CLI prints its message on one line and exits 2. Anything else is a bug or an
environment failure: one line on the terminal, the traceback in the log, exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # published, or up to date
    ERROR = 1  # unexpected error
    SPEC = 2  # invalid spec, data, model or usage
    BLOCKED = 3  # the gate blocked every variant: nothing published, alias untouched
    VARIANT_FAILED = 4  # published, but at least one variant failed to convert or evaluate
    BUSY = 5  # the pipeline is already being run
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


def worst(codes: list[int]) -> int:
    """An interrupt outranks an error, which outranks a refusal, a blocked gate, then a failed
    variant: the exit code of several pipelines is the worst of theirs."""
    for code in (Exit.INTERRUPTED, Exit.TERMINATED, Exit.ERROR, Exit.SPEC, Exit.BUSY,
                 Exit.BLOCKED, Exit.VARIANT_FAILED):
        if code in codes:
            return int(code)
    return int(Exit.OK)


class QuantflowError(Exception):
    """Base of every error quantflow raises on purpose."""


class UserError(QuantflowError, ValueError):
    """Input the user can fix; reported as one line with exit 2."""


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line:col" or "--set key=value"
    path: str  # "pipelines.digits.variants[2].kind"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path or '<document>'}: {self.message}"


class SpecError(UserError):
    """A spec that cannot be used; ``problems`` holds one entry per mistake."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class DataError(UserError):
    """The data cannot be used; the message says what is wrong and where."""


class ModelError(UserError):
    """A model file that cannot be used, or a model that does not fit the data."""


class RegistryError(QuantflowError, RuntimeError):
    """The registry is not in the state publishing or resolving needs."""


class IntegrityError(RegistryError):
    """A file is not the one that was measured: publishing it would ship untested bytes."""


class DvcError(QuantflowError, RuntimeError):
    """DVC could not record a run; the message says which stages and why."""


class PipelineBusy(QuantflowError, RuntimeError):
    """Another run holds this pipeline's lock."""


class StepError(QuantflowError, RuntimeError):
    """A step failed on another library's error (the converter's, say), re-raised under a type
    that the flow's process can unpickle without importing that library."""


class Interrupted(BaseException):
    """The run was stopped from outside: a signal (Ctrl-C, SIGTERM) or its Prefect server died.

    A BaseException, like KeyboardInterrupt, so that the ``except Exception`` of a step, of
    Prefect or of DVC cannot turn it into a recorded failure and carry on; ``code`` is the exit
    code the CLI ends with and ``message`` the one line it prints.
    """

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
