"""One root error, a subclass per stage, and the exit codes the CLI maps them to.

Every error a user can cause formats itself as one line. Errors that know where they
come from carry the file, line, column and key path, and print as
``FILE:LINE:COL: PATH: message``.
"""

from __future__ import annotations

# Exit codes (DESIGN.md section 4). Kept distinct so CI scripts can tell them apart.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_HOSTS_FAILED = 2
EXIT_HOSTS_UNREACHABLE = 3
EXIT_INVALID = 4
EXIT_USAGE = 5
EXIT_WAIT_TIMEOUT = 124
EXIT_INTERRUPTED = 99
EXIT_UNEXPECTED = 250


class RunnerError(Exception):
    """Root of every error `runner` reports to a user as one line."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class LocatedError(RunnerError):
    """An error in an input file: knows file, line, column (1-based) and key path."""

    exit_code = EXIT_INVALID

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.col = col
        self.path = path

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = str(self.file)
            if self.line:
                where += f":{self.line}"
                if self.col:
                    where += f":{self.col}"
            where += ": "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


class PlaybookError(LocatedError):
    """The playbook is not valid: YAML, schema, or a semantic rule."""


class InventoryError(LocatedError):
    """The inventory cannot be read or is not valid."""


class PatternError(LocatedError):
    """A host pattern is malformed (an unbalanced regex, an empty term...)."""


class TemplateError(LocatedError):
    """A Jinja2 template failed: undefined variable, syntax error, filter error."""


class UsageError(RunnerError):
    """Bad command-line options."""

    exit_code = EXIT_USAGE


class ConnectError(RunnerError):
    """A host could not be reached or refused us (timeout, auth, changed host key)."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.reason = message


class HostKeyError(ConnectError):
    """The host presented a key different from the one recorded in known_hosts."""


class StepError(RunnerError):
    """A step could not be carried out (not a non-zero exit: that is a result)."""


class JobStateError(RunnerError):
    """An illegal job state transition, or an operation the job's state forbids."""


class JobNotFoundError(RunnerError):
    """No job with that id in the store."""
