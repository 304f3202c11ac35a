"""Where step output goes while it streams: batched into the job store, or into files.

Output arrives in chunks from reader threads. A `LineBuffer` turns chunks into records
that end on a line boundary (so a received record is whole lines) while never holding
more than a bounded tail. `StoreWriter` moves records into the store from one thread,
one transaction per batch, and pushes back on producers when it falls behind, so 100 MB
of output never sits in memory. `flush` waits until everything queued is committed (a
child becomes terminal only after its output is in the store); the first batch the
store refuses ends the writing for good (a job never has a hole in its output).
"""

from __future__ import annotations

import codecs
import errno
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RunnerError, StoreError
from runner.jobs.store import RETRY_PAUSES, JobStore, runtime_changes

Record = tuple[int, str, int, str, str, float]  # (job_id, host, step, stream, data, time)

_MAX_PENDING = 64 * 1024  # emit a record without a newline once this much is pending
_FLUSH_SECONDS = 0.05
_BATCH_BYTES = 1 << 20
_QUEUE_BYTES = 16 << 20
_EMPTY = object()
_RUNTIME = object()  # a queue item's kind: `set_runtime` changes for one child
_EVENT = object()  # a queue item's kind: a worker's event for its controller


@dataclass
class _Batch:
    """What one transaction commits, and the flushes that wait for it."""

    outputs: list[Record] = field(default_factory=list)
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    runtimes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[int, str]] = field(default_factory=list)
    flushes: list[threading.Event] = field(default_factory=list)
    size: int = 0

    def add(self, kind: object, row: Any) -> None:
        """One queued row: a runtime change, an event, an output record (`kind` true) or a step."""
        if kind is _RUNTIME:
            self.runtimes.append(row)
        elif kind is _EVENT:
            self.events.append(row)
        elif kind:
            self.outputs.append(row)
            self.size += len(row[4])
        else:
            self.steps.append(row)


class LineBuffer:
    """Decodes one stream's bytes (UTF-8, errors replaced) and emits whole lines.

    `hold(text)`, when given, says how many characters at the end of what would be
    emitted must wait for more (the start of a secret, which must reach its mask whole).
    """

    def __init__(
        self, emit: Callable[[str], None], hold: Callable[[str], int] | None = None
    ) -> None:
        self._emit = emit
        self._hold = hold
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> None:
        text = self._pending + self._decoder.decode(data)
        cut = text.rfind("\n") + 1
        if cut == 0 and len(text) < _MAX_PENDING:
            self._pending = text
            return
        if cut == 0:
            cut = len(text)
        if self._hold is not None:
            cut -= self._hold(text[:cut])
            if cut == 0:
                self._pending = text
                return
        self._pending = text[cut:]
        self._emit(text[:cut])

    def close(self) -> None:
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if text:
            self._emit(text)


class StoreWriter:
    """Batches output records and step results into the job store from one writer
    thread: a transaction per batch, however many hosts are writing."""

    def __init__(
        self, store: JobStore, on_error: Callable[[BaseException], None] | None = None
    ) -> None:
        self._store = store
        self._on_error = on_error
        self._queue: queue.Queue[Any] = queue.Queue()
        self._bytes = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="runner-output", daemon=True)
        self._thread.start()

    def write(self, job_id: int, host: str, step: int, stream: str, data: str) -> None:
        size = len(data)
        with self._cond:
            while self._bytes > _QUEUE_BYTES and self._error is None:
                self._cond.wait(0.5)
            self._bytes += size
        self._queue.put((True, (job_id, host, step, stream, data, time.time())))

    def record_step(self, *result: Any) -> None:
        """`JobStore.record_step`, batched with the output around it."""
        self._queue.put((False, result))

    def set_runtime(self, child_id: int, **fields: Any) -> None:
        """`JobStore.set_runtime` (a step's process group as it starts and ends), batched
        with the output around it: two writes a step would cost a fleet its speed."""
        self._queue.put((_RUNTIME, (child_id, runtime_changes(**fields))))

    def send_event(self, child_id: int, data: str) -> None:
        """An event (JSON) for the controller of a child run on a worker, batched with
        the output and step results around it, in the order produced."""
        self._queue.put((_EVENT, (child_id, data)))

    def flush(self) -> BaseException | None:
        """Wait until everything queued so far is committed; the writer's error, if any.

        Flushes asked for together share one transaction, so a fleet of children
        finishing at once still costs a few commits."""
        committed = threading.Event()
        self._queue.put(committed)
        committed.wait()
        return self._error

    @property
    def error(self) -> BaseException | None:
        """The store's refusal that ended the writing, if one did."""
        return self._error

    def _loop(self) -> None:
        done = False
        while not done:
            batch = _Batch()
            done = self._gather(batch)
            if batch.outputs or batch.steps or batch.runtimes or batch.events:
                self._commit(batch)
            for committed in batch.flushes:
                committed.set()

    def _gather(self, batch: _Batch) -> bool:
        """Fill `batch` from the queue until it is big enough, a flush finds the queue
        empty or the flush interval passes; True once the queue is closed."""
        item = self._queue.get()
        deadline = time.monotonic() + _FLUSH_SECONDS
        while item is not None:
            if isinstance(item, threading.Event):
                batch.flushes.append(item)
                deadline = 0.0  # commit what is queued now, without waiting for more
            else:
                batch.add(*item)
                if batch.size >= _BATCH_BYTES:
                    return False
            item = self._next(deadline)
            if item is _EMPTY:
                return False
        return True

    def _next(self, deadline: float) -> Any:
        """The next queued item, waiting until `deadline` at most; `_EMPTY` if none came."""
        try:
            return self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return _EMPTY

    def _commit(self, batch: _Batch) -> None:
        if self._error is None:  # after a lost batch nothing later is stored: no holes
            try:
                self._append(batch)
            except BaseException as exc:  # noqa: BLE001 - reported by flush() and close()
                self._error = exc
                if self._on_error is not None:
                    self._on_error(exc)
        with self._cond:
            self._bytes -= batch.size
            self._cond.notify_all()

    def _append(self, batch: _Batch) -> None:
        """One batch in one transaction, tried again while the store's server is out of
        reach (bounded: `RETRY_PAUSES`); a batch that failed was not committed."""
        for pause in (*RETRY_PAUSES, None):
            try:
                self._store.append_batch(batch.outputs, batch.steps, batch.runtimes, batch.events)
                return
            except StoreError as error:
                if not error.transient or pause is None:
                    raise
                time.sleep(pause)

    def close(self) -> None:
        """Write everything queued, then stop; raises what the writer thread met."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class FileWriter:
    """`results.to: file`: each child's output appended to its own file, mode 0600. A
    relative path is taken from `base` (a worker: its controller's directory), else from
    the working directory."""

    def __init__(self, base: Path | None = None) -> None:
        self._files: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._base = base

    def open(self, job_id: int, path: Path) -> None:
        """Start `path` empty, 0600. A symbolic link or anything but a regular file there
        is refused (RunnerError naming it): output is never written through a link."""
        if self._base is not None:
            path = self._base / path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = _open_result_file(path)
        with self._lock:
            self._files[job_id] = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, job_id: int, host: str, step: int, stream: str, data: str) -> None:
        handle = self._files.get(job_id)
        if handle is not None:
            handle.write(data)

    def close_job(self, job_id: int) -> None:
        with self._lock:
            handle = self._files.pop(job_id, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        for job_id in list(self._files):
            self.close_job(job_id)


def _open_result_file(path: Path) -> int:
    """`path` opened for writing, emptied and 0600, if it is (or becomes) a regular file.

    O_NONBLOCK keeps a FIFO planted there from blocking the open.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            why = "is a symbolic link: refusing to write through it"
            raise RunnerError(f"result file {path} {why}") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunnerError(f"result file {path} is not a regular file: refusing to write to it")
    os.set_blocking(fd, True)
    os.ftruncate(fd, 0)
    os.fchmod(fd, 0o600)
    return fd
