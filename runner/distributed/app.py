"""The Celery application both sides share: one task, JSON only, one child at a time.

`runner run` with a broker sends each child as a `runner.child` task to the queue its job
names (`queue:`, or the host's `runner_queue`; "runner" otherwise). `runner worker` takes
them with Celery's own worker (its thread pool: one process holds the SSH sessions of all
its children, so a worker that dies takes every connection with it, and sshd ends the
steps). A task is acknowledged after it ran (late acks) and fetched one at a time
(prefetch 1); a task delivered again after its worker died finds its child already
claimed in the store and does nothing: a step is never run twice behind the user's back.
Only JSON crosses the broker, never pickle.
"""

from __future__ import annotations

from typing import Any

from runner.errors import RunnerError, UsageError
from runner.jobs.urls import check_url, endpoint, hide_password, mask_url

TASK = "runner.child"
DEFAULT_QUEUE = "runner"
BROKER_TIMEOUT_S = 5.0


class BrokerError(RunnerError):
    """The broker cannot be reached or used: one line naming it (password masked)."""

    exit_code = 1


def make_app(broker: str) -> Any:
    """The Celery app for `broker` (redis://...); Celery is imported only here."""
    check_broker_url(broker)
    try:
        from celery import Celery
    except ImportError:
        raise BrokerError(
            f"{mask_url(broker)}: a broker needs Celery: pip install 'runner[distributed]'"
        ) from None
    app = Celery("runner", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=3,
        broker_connection_timeout=BROKER_TIMEOUT_S,
        broker_transport_options={
            "socket_connect_timeout": BROKER_TIMEOUT_S,
            "socket_timeout": 10.0,  # a broker that stops answering is an error, not a hang
            "socket_keepalive": True,
        },
        redis_socket_connect_timeout=BROKER_TIMEOUT_S,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=False,  # `runner worker` hears `revoke` alone
        task_publish_retry=True,  # a broker away for a moment: bounded tries, then an error
        task_publish_retry_policy={
            "max_retries": 3,
            "interval_start": 0.5,
            "interval_step": 1.0,
            "interval_max": 2.0,
        },
    )
    return app


def revoke(app: Any, task_ids: list[str]) -> bool:
    """Tell every worker not to run these tasks when they come up (Celery's revoke, never
    terminating: a child already claimed is stopped through the store). Best effort: a
    broker out of reach is no error, as the store already says the children are over and
    a worker refuses to claim them. False when the broker could not be told."""
    if not task_ids:
        return True
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
            app.control.revoke(task_ids, connection=conn)
    except Exception:  # noqa: BLE001 - any broker failure: the store stays the truth
        return False
    return True


def check_broker_url(broker: str) -> None:
    """Refuse a broker URL runner cannot use, in one line (password masked), exit 5."""
    wrong = check_url(broker, ("redis", "rediss"))
    if wrong is not None:
        raise UsageError(f"broker {mask_url(broker)}: {wrong}")


def check_broker(app: Any, broker: str) -> None:
    """Connect to the broker once, or say in one line that it cannot be reached."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - any failure to connect is told the same way
        raise BrokerError(unreachable(broker, error)) from None


def unreachable(broker: str, error: BaseException) -> str:
    """The one line for a broker that cannot be used: where it is, and why."""
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    reach = f"cannot reach the broker at {endpoint(broker)}"
    return f"{mask_url(broker)}: {reach}: {hide_password(broker, detail)}"
