"""The order a child runs its steps in, through blocks: `rescue` after a failure in the
block, `always` whatever happened.

`BlockFlow` yields the steps to run one by one; the step runner tells it when one failed
(and its `ignore_errors` did not say to go on) with `fail`. The rest of that block is
then skipped and its `rescue` runs: when the rescue completes, the failure is rescued and
the host goes on. `always` runs after the block and its rescue, failed or not; a failure
left after it skips every later step but the enclosing blocks' rescue and always. A job
without blocks is one plain block: its first failure ends it. A stopped child (or an
unreachable host) is not the flow's business: the runner stops asking for steps.

In the recap a rescued failure moves from `failed` to `rescued`, as Ansible's recap
counts it: the step itself stays failed in `runner job show`.
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.jobs.states import StepStatus
from runner.planning.model import Block, Step
from runner.planning.planner import JobPlan

FAILED = StepStatus.FAILED.value
RESCUED = "rescued"  # the recap's count of failures a rescue took over


class BlockFlow:
    """The steps of `jp` (those its tags keep) in the order they run on one host."""

    def __init__(
        self, jp: JobPlan, counts: dict[str, int], steps: tuple[Step, ...] | None = None
    ) -> None:
        """`steps`, when given, are run one after another instead of the job's (its
        notified handlers, which sit in no block)."""
        self._steps = {step.index: step for step in (jp.steps if steps is None else steps)}
        tree = jp.job.tree if steps is None else None
        self._tree = tree if tree is not None else tuple(self._steps)
        self._counts = counts  # the child's recap counts, a rescued failure moved in them
        self.failure: str | None = None  # why the child fails, unless a rescue comes

    def __iter__(self) -> Iterator[Step]:
        return self._nodes(self._tree)

    def fail(self, reason: str) -> None:
        """The last step yielded failed: skip to its block's rescue or always, or the end."""
        self.failure = reason

    def _nodes(self, nodes: tuple[int | Block, ...]) -> Iterator[Step]:
        for node in nodes:
            if self.failure is not None:
                return
            if isinstance(node, Block):
                yield from self._block(node)
            elif node in self._steps:
                yield self._steps[node]

    def _block(self, block: Block) -> Iterator[Step]:
        yield from self._nodes(block.body)
        if self.failure is not None and block.rescue:
            self.failure = None
            self._counts[FAILED] -= 1
            self._counts[RESCUED] = self._counts.get(RESCUED, 0) + 1
            yield from self._nodes(block.rescue)
        failure, self.failure = self.failure, None
        yield from self._nodes(block.always)
        self.failure = failure or self.failure
