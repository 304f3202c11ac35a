"""Found in a third review of the distributed mode, as a user and as an attacker: store and
broker URLs with their password in a parameter or an unknown parameter, hostile names,
and kills at the worst moment. Real PostgreSQL, Redis, `runner worker` processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import Cli

PLAY = "jobs: [{name: j, type: thread, steps: [{local: 'true'}]}]\n"


@pytest.mark.parametrize(
    "store, broker",
    [
        ("postgresql://runner@127.0.0.1:1/runner?password=qz7secret", None),
        ("postgresql://runner@127.0.0.1:1/runner?sslmode=disable&Password=qz7secret", None),
        ("a live store", "redis://127.0.0.1:1/0?password=qz7secret"),
    ],
)
def test_a_password_given_as_a_url_parameter_is_never_shown(
    runner_cli: Cli, request: pytest.FixtureRequest, store: str, broker: str | None
) -> None:
    # libpq and redis-py both take `?password=`: the one line naming the server that
    # cannot be reached printed the URL as typed, password and all.
    book = runner_cli.playbook(PLAY)
    if not store.startswith("postgresql:"):
        store = request.getfixturevalue("pg_url")
    runner_cli.env = {**runner_cli.env, "RUNNER_STORE": store}
    if broker:
        runner_cli.env["RUNNER_BROKER"] = broker
    result = runner_cli("run", book)
    assert result.returncode in (1, 5), result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "qz7secret" not in result.output, result.output
    assert "qz7secret" not in runner_cli("job", "list").output


def test_an_unknown_store_url_parameter_is_one_line_exit_5_not_an_unexpected_error(
    runner_cli: Cli, pg_url: str, tmp_path: Path
) -> None:
    # `?foo=1` (or `?PASSWORD=`, which libpq does not know either) in RUNNER_STORE was
    # "runner: unexpected error: ProgrammingError: ...", exit 250, on every command.
    runner_cli.env = {**runner_cli.env, "RUNNER_STORE": f"{pg_url}?applicaton_name=x"}
    for command in (("job", "list"), ("store", "migrate"), ("run", runner_cli.playbook(PLAY))):
        result = runner_cli(*command)
        assert result.returncode == 5, result.output
        assert result.stderr.count("\n") == 1 and "applicaton_name" in result.stderr
        assert "unexpected" not in result.stderr, result.stderr
