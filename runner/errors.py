"""One root error, a subclass per stage, and the exit codes the CLI maps them to.

Every error a user can cause formats itself as one line. Errors that know where they
come from carry the file, line, column and key path, and print as
``FILE:LINE:COL: PATH: message``.
"""

from __future__ import annotations

# Exit codes, as the README lists them. Kept distinct so CI scripts can tell them apart.
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
    every: list[LocatedError] | None = None  # all the errors of the file (see `gathered`)

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


def gathered(errors: list[LocatedError], file: str | None = None) -> LocatedError:
    """Every error found in one file, as one to raise: the first, with all of them in its
    `every` (those of `file` by line first, then those of other files), so that `runner
    validate` prints each on its own line while other commands print the first."""
    ordered = sorted(errors, key=lambda e: (e.file != file, e.file or "", e.line or 0, e.col or 0))
    first = ordered[0]
    first.every = ordered
    return first


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


class StoreError(RunnerError):
    """The job store cannot be opened, read or written: names the file, the cause and
    what to do about it."""

    def __init__(self, path: object, message: str, transient: bool = False) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.transient = transient  # a server out of reach for now: trying again may work

    @classmethod
    def wrap(cls, error: BaseException, path: object) -> StoreError:
        """`error` (from SQLite or the file system) as a StoreError on `path`."""
        if isinstance(error, StoreError):
            return error
        return cls(path, describe_store_fault(error, path))


# SQLite's primary result codes for a store that cannot be used, and what to say.
_MOVE_ASIDE = "move it aside (mv {path} {path}.bad) and runner starts a new, empty store"
_STORE_FAULTS = {
    3: "permission denied on the job store: {hint}",  # SQLITE_PERM
    8: "the job store is read-only: {hint}",  # SQLITE_READONLY
    10: "input/output error on the job store ({detail})",  # SQLITE_IOERR
    11: "the job store is damaged ({detail}): " + _MOVE_ASIDE,  # SQLITE_CORRUPT
    13: "the disk is full: the job store cannot be written",  # SQLITE_FULL
    14: "the job store cannot be opened: {hint}",  # SQLITE_CANTOPEN
    26: "not a job store (not a SQLite database, or damaged): " + _MOVE_ASIDE,  # NOTADB
}
_WRITABLE = "make it and its directory writable, or set RUNNER_HOME to a writable directory"
STORE_FAULT_CODES = frozenset(_STORE_FAULTS)


def store_fault_code(error: BaseException) -> int | None:
    """SQLite's primary result code of `error` when it says the store is unusable."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in STORE_FAULT_CODES:
        return None
    return code & 0xFF


def describe_store_fault(error: BaseException, path: object) -> str:
    """The cause of a store fault in runner's words, with what to do."""
    code = store_fault_code(error)
    if code is not None:
        return _STORE_FAULTS[code].format(path=path, hint=_WRITABLE, detail=error)
    if isinstance(error, OSError) and error.strerror:
        return f"cannot use the job store: {error.strerror}; {_WRITABLE}"
    return f"job store error: {type(error).__name__}: {error}"
