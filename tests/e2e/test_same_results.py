"""The same playbook gives the same results with workers and without: every job type,
`needs`, `serial`, `throttle`, `max_fail_percentage`, `register` across jobs, result
files, check and diff; the JSON and JUnit reports and the exit code, compared field by
field (times and paths aside) between a run in the runner and one on two workers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli import Cli

PLAYBOOK = """
name: Same everywhere
jobs:
  - name: facts
    targets: fleet
    steps:
      - name: who
        run: echo "{{{{ inventory_hostname }}}}"
        register: who
  - name: rolling
    targets: fleet
    needs: [facts]
    serial: [1, "50%"]
    throttle: 2
    steps:
      - name: uses what facts registered
        run: echo "was {{{{ who.stdout }}}}"
      - name: fails on host3
        run: test {{{{ inventory_hostname }}}} != host3
  - name: tolerant
    targets: fleet
    max_fail_percentage: 20
    steps:
      - run: test {{{{ inventory_hostname }}}} != host2
  - name: bg
    type: background
    targets: host1
    steps: [{{local: "echo background"}}]
  - name: th
    type: thread
    targets: host4
    needs: [facts]
    steps: [{{local: "echo thread {{{{ who.stdout }}}}"}}]
  - name: files
    targets: "host1:host2"
    results: {{to: file, path: "{results}/{{{{ inventory_hostname }}}}.log"}}
    steps:
      - run: echo to a file
      - put: {{src: hello.txt, dest: "{dest}/{{{{ inventory_hostname }}}}.txt"}}
"""


def _normalised(document: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs between any two runs (times, the playbook's
    directory), children in host order."""
    document = json.loads(re.sub(r"/tmp/[^\"]*?/(local|workers)/", "/X/", json.dumps(document)))
    document.pop("duration")
    document.pop("playbook")
    for job in document["jobs"]:
        job.pop("duration")
        job["children"].sort(key=lambda child: child["host"])
        for child in job["children"]:
            child.pop("duration")
            for step in child["steps"]:
                step.pop("duration")
    return document


def _junit(path: Path) -> str:
    return re.sub(r' time="[0-9.]+"', "", path.read_text())


def _run(cli: Cli, root: Path, *extra: str) -> tuple[int, dict[str, Any], str, list[str]]:
    root.mkdir()
    (root / "dest").mkdir()
    (cli.cwd / "hello.txt").write_text("hello\n")
    book = cli.playbook(PLAYBOOK.format(results=root / "results", dest=root / "dest"))
    inventory = cli.inventory
    junit = root / "junit.xml"
    result = cli("run", book, "-i", inventory, "-f", "5", "--format", "json", "--junit",
                 str(junit), *extra)  # fmt: skip
    files = sorted(p.name + ":" + p.read_text() for p in (root / "results").glob("*"))
    assert result.stdout.startswith("{"), result.output
    document = json.loads(result.stdout)
    for job in document["jobs"]:  # the output too: what `register` carried across jobs
        records = cli.receive(job["Id"])
        files.extend(sorted(f"{job['Name']} {r['host']}: {r['data']}" for r in records))
    return result.returncode, document, _junit(junit), files


@pytest.mark.parametrize("cli", ["workers"], indirect=True)
@pytest.mark.parametrize("extra", [(), ("--check", "--diff")], ids=["run", "check"])
def test_the_same_playbook_gives_the_same_reports_with_workers_and_without(
    cli: Cli, runner_cli: Cli, inventory: str, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    local = Cli(tmp_path / "local-home", cli.cwd)  # the SQLite store, children in the runner
    local.inventory = cli.inventory = inventory  # type: ignore[attr-defined]
    code, document, junit, files = _run(local, tmp_path / "local", *extra)
    code_w, document_w, junit_w, files_w = _run(cli, tmp_path / "workers", *extra)
    # host3 fails `rolling` and host2 `tolerant` (over its 20 %); --check runs nothing
    assert code == (0 if extra else 2), document
    assert code_w == code
    assert _normalised(document_w) == _normalised(document)
    assert junit_w.replace("/workers/", "/local/") == junit
    assert [text.replace("/workers/", "/local/") for text in files_w] == files
    if not extra:
        assert files[:2] == ["host1.log:to a file\n", "host2.log:to a file\n"]
        assert "th host4: thread host4\n" in files  # registered by `facts`, used by `th`
