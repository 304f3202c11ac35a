"""What a finished run leaves for scripts and CI: the JSON document and the JUnit XML.

Both are built from the same `RunSummary`: the run's jobs and children as the store
holds them (ids, states, every step's rc, status and duration), the per-host stats the
reporter counted, and the exit code. `runner run --format json` prints the document;
`--junit FILE` writes one testcase per job x host x step, the form GitLab, Jenkins and
GitHub test reporters read. Every text and attribute of the XML is made well formed:
terminal escape sequences (colours, cursor moves) are dropped and any other character
XML 1.0 forbids is written as its Python escape (`\x07`, `\ufffe`), so a step's coloured
stderr or a control character in a name still yields a file every parser reads.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.jobs.states import FAILING_STEPS, StepStatus

STDERR_TAIL_LINES = 20

# ECMA-48 control sequences (CSI, e.g. colours) and operating system commands (OSC).
_TERMINAL_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# A step status as a JUnit verdict: failed steps are failures, skipped ones skipped.
FAILED_STATUSES = tuple(status.value for status in FAILING_STEPS)
SKIPPED_STATUSES = (StepStatus.SKIPPED.value, StepStatus.STOPPED.value)


@dataclass
class StepSummary:
    name: str
    index: int
    rc: int | None
    status: str
    duration: float
    error: str | None
    ignored: bool = False  # failed, but the step has ignore_errors
    stderr_tail: str = ""
    rescued: bool = False  # failed, and a block's rescue took over (see _mark_rescued)


@dataclass
class ChildSummary:
    id: int
    host: str
    state: str
    reason: str | None
    unreachable: bool
    duration: float
    steps: list[StepSummary] = field(default_factory=list)


@dataclass
class JobSummary:
    id: int
    name: str
    state: str
    type_name: str
    duration: float
    children: list[ChildSummary] = field(default_factory=list)


@dataclass
class RunSummary:
    """A finished run, read back from the job store once, for every output form."""

    playbook: str
    jobs: list[JobSummary]
    stats: dict[str, dict[str, int]]
    exit_code: int
    interrupted: bool
    check: bool
    duration: float
    error: str | None = None  # why the run stopped short: the job store refused a write


def _seconds(started: float | None, ended: float | None) -> float:
    if started is None or ended is None:
        return 0.0
    return round(max(0.0, ended - started), 6)


def _mark_rescued(plan: Any, job_name: str, steps: list[StepSummary]) -> None:
    """Mark the failed steps of one child that a block's rescue took over: the recap
    counts them `rescued`, and JUnit shows them as passed with a note, not as failures."""
    from runner.planning.blocks import rescued_steps

    found = [jp.job for jp in plan.jobs if jp.name == job_name and jp.job.tree is not None]
    if not found:
        return
    rescued = rescued_steps(found[0], {step.index for step in steps})
    for step in steps:
        step.rescued = step.index in rescued and step.status in FAILED_STATUSES


def summarize(
    store: Any,
    plan: Any,
    report: Any,
    stats: dict[str, dict[str, int]],
    *,
    playbook: str,
    exit_code: int,
    check: bool,
    duration: float,
    with_stderr: bool = False,
) -> RunSummary:
    """Read the run's jobs, children and steps back from `store`.

    With `with_stderr`, each step gets the last lines its host wrote to stderr (read
    with keep, so nothing is marked received).
    """
    ignoring = {
        (jp.name, step.index)
        for jp in plan.jobs
        for step in jp.steps + jp.handlers
        if step.ignore_errors
    }
    jobs = []
    for job in report.jobs:
        record = store.get(job.job_id)
        summary = JobSummary(
            job.job_id,
            job.name,
            str(record.state),
            record.ps_type_name,
            _seconds(record.started, record.ended),
        )
        for child in sorted(job.children, key=lambda c: c.job_id):
            child_record = store.get(child.job_id)
            tails = _stderr_tails(store, child.job_id) if with_stderr else {}
            steps = [
                StepSummary(
                    s.name,
                    s.index,
                    s.rc,
                    s.status,
                    _seconds(s.started, s.ended),
                    s.error,
                    s.status in FAILED_STATUSES and (job.name, s.index) in ignoring,
                    tails.get(s.index, ""),
                )
                for s in store.steps(child.job_id)
            ]
            _mark_rescued(plan, job.name, steps)
            summary.children.append(
                ChildSummary(
                    child.job_id,
                    child.host,
                    child.state,
                    child.reason,
                    child.unreachable,
                    _seconds(child_record.started, child_record.ended),
                    steps,
                )
            )
        jobs.append(summary)
    error = getattr(report, "store_error", None)
    return RunSummary(
        playbook,
        jobs,
        stats,
        exit_code,
        report.interrupted,
        check,
        round(duration, 6),
        None if error is None else str(error),
    )


def _stderr_tails(store: Any, child_id: int) -> dict[int, str]:
    """The last STDERR_TAIL_LINES lines of stderr of each step of one child."""
    tails: dict[int, deque[str]] = {}
    for record in store.iter_receive(child_id, keep=True):
        if record.stream != "stderr" or record.step is None:
            continue
        lines = tails.setdefault(record.step, deque(maxlen=STDERR_TAIL_LINES))
        lines.extend(record.data.splitlines())
    return {step: "\n".join(lines) for step, lines in tails.items()}


# -- JSON ---------------------------------------------------------------------------------


def run_document(summary: RunSummary) -> dict[str, Any]:
    """The `runner run --format json` document (the keys the README names, plus more)."""
    return {
        "playbook": summary.playbook,
        "check": summary.check,
        "jobs": [
            {
                "Id": job.id,
                "Name": job.name,
                "State": job.state,
                "PSJobTypeName": job.type_name,
                "duration": job.duration,
                "children": [
                    {
                        "Id": child.id,
                        "host": child.host,
                        "State": child.state,
                        "reason": child.reason,
                        "unreachable": child.unreachable,
                        "duration": child.duration,
                        "steps": [
                            {
                                "name": step.name,
                                "index": step.index,
                                "rc": step.rc,
                                "status": step.status,
                                "duration": step.duration,
                                "error": step.error,
                                "ignored": step.ignored,
                                "rescued": step.rescued,
                            }
                            for step in child.steps
                        ],
                    }
                    for child in job.children
                ],
            }
            for job in summary.jobs
        ],
        "stats": {host: dict(counts) for host, counts in summary.stats.items()},
        "interrupted": summary.interrupted,
        "exit_code": summary.exit_code,
        "duration": summary.duration,
        "error": summary.error,
    }


# -- JUnit XML ----------------------------------------------------------------------------


def junit_tree(summary: RunSummary) -> ET.ElementTree:
    """One <testsuite> per job, one <testcase> per host x step of it.

    classname is the job's name and name is `HOST: STEP`, so a reporter groups the
    cases by job and shows which host failed which step. A host that never reached a
    step (unreachable, stopped before it) gets one case for the host itself, so a
    failure is never lost because no step recorded it.
    """
    root = ET.Element("testsuites", name=Path(summary.playbook).name)
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for job in summary.jobs:
        suite = ET.SubElement(root, "testsuite", name=job.name, id=str(job.id))
        counts = dict.fromkeys(totals, 0)
        for child in job.children:
            for case in _child_cases(job, child):
                suite.append(case)
                counts["tests"] += 1
                for verdict, key in (
                    ("failure", "failures"),
                    ("error", "errors"),
                    ("skipped", "skipped"),
                ):
                    if case.find(verdict) is not None:
                        counts[key] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{job.duration:.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{summary.duration:.3f}")
    _make_well_formed(root)
    ET.indent(root)
    return ET.ElementTree(root)


def xml_safe(text: str) -> str:
    """`text` without terminal escape sequences, other characters XML 1.0 forbids escaped."""
    text = _TERMINAL_SEQUENCE.sub("", text)
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _make_well_formed(root: ET.Element) -> None:
    """Pass every text, tail and attribute value of the tree through `xml_safe`."""
    for element in root.iter():
        if element.text:
            element.text = xml_safe(element.text)
        if element.tail:
            element.tail = xml_safe(element.tail)
        for key, value in element.attrib.items():
            element.set(key, xml_safe(value))


def _child_cases(job: JobSummary, child: ChildSummary) -> list[ET.Element]:
    cases = [_step_case(job, child, step) for step in child.steps]
    stepless_failure = child.state != "Completed" and not any(
        (s.status in FAILED_STATUSES and not s.ignored and not s.rescued) or s.status == "stopped"
        for s in child.steps
    )
    if stepless_failure:
        case = _case(job.name, f"{child.host}: (host)", child.duration)
        reason = child.reason or child.state
        if child.unreachable or child.state == "Failed":
            ET.SubElement(
                case,
                "failure",
                message=reason,
                type="unreachable" if child.unreachable else "failed",
            ).text = reason
        else:
            ET.SubElement(case, "skipped", message=reason)
        cases.append(case)
    return cases


def _case(classname: str, name: str, seconds: float) -> ET.Element:
    return ET.Element("testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def _step_case(job: JobSummary, child: ChildSummary, step: StepSummary) -> ET.Element:
    case = _case(job.name, f"{child.host}: {step.name}", step.duration)
    if step.ignored:
        ET.SubElement(
            case, "system-out"
        ).text = f"failed, ignored (ignore_errors): {step.error or step.rc}"
    elif step.rescued:
        ET.SubElement(case, "system-out").text = f"failed, rescued: {step.error or step.rc}"
    elif step.status in FAILED_STATUSES:
        message = step.error or (
            f"exited with status {step.rc}" if step.rc is not None else step.status
        )
        failure = ET.SubElement(case, "failure", message=message, type=step.status)
        failure.text = step.stderr_tail or message
    elif step.status in SKIPPED_STATUSES:
        ET.SubElement(case, "skipped", message=step.error or step.status)
    if step.stderr_tail:
        ET.SubElement(case, "system-err").text = step.stderr_tail
    return case


def write_junit(summary: RunSummary, path: str | Path) -> None:
    """Write the JUnit XML report to `path` (its directory is created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(summary).write(target, encoding="utf-8", xml_declaration=True)


def failed_hosts(summary: RunSummary) -> list[str]:
    """Hosts that failed or were unreachable in any job, in first-seen order."""
    hosts: dict[str, None] = {}
    for job in summary.jobs:
        for child in job.children:
            if child.state == "Failed":
                hosts[child.host] = None
    return list(hosts)
