"""Server URLs in messages: a password never shown, a malformed URL named for what it is."""

from __future__ import annotations

import pytest

from runner.jobs.urls import check_url, endpoint, hide_password, mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://runner:s3cret@db:5432/runner", "postgresql://runner:***@db:5432/runner"),
        ("redis://:s3cret@mq:6379/0", "redis://:***@mq:6379/0"),
        ("postgresql://runner@db/runner", "postgresql://runner@db/runner"),
        ("postgresql://runner:pa55@s3cret@db/runner", "postgresql://runner:***@db/runner"),
        ("redis://:pa55 s3cret@mq:1/0", "redis://:***@mq:1/0"),
        ("redis://u:s3cret@[::1:6379/0", "redis://u:***@[::1:6379/0"),
        ("postgresql://runner@db/r?password=s3cret", "postgresql://runner@db/r?password=***"),
        ("redis://mq:1/0?db=1&Password=s3cret&x=1", "redis://mq:1/0?db=1&Password=***&x=1"),
    ],
)
def test_a_password_is_masked_even_in_a_url_typed_wrong(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "s3cret" not in mask_url(url)


@pytest.mark.parametrize(
    ("url", "wrong"),
    [
        ("postgresql://runner:pa55@s3cret@db/runner", "percent-encode"),
        ("redis://:pa55/s3cret@mq:1/0", "malformed"),
        ("redis://:pa55 s3cret@mq:1/0", "spaces"),
        ("redis://u:s3cret@[::1:6379/0", "malformed"),
        ("amqp://mq:5672//", "redis://"),
    ],
)
def test_a_url_runner_cannot_use_is_named_for_what_is_wrong(url: str, wrong: str) -> None:
    told = check_url(url, ("redis", "rediss", "postgresql"))
    assert told is not None and wrong in told
    assert "s3cret" not in told


def test_a_good_url_passes_and_names_its_endpoint() -> None:
    assert check_url("redis://:p%40ss@mq:6379/0", ("redis",)) is None
    assert endpoint("postgresql://runner@db.example:6432/runner") == "db.example:6432"
    assert hide_password("redis://:p%40ss@mq/0", "auth failed for p@ss") == "auth failed for ***"


def test_a_password_given_as_a_parameter_is_hidden_in_a_driver_s_message() -> None:
    url = "postgresql://runner@db/r?password=s3cr%40t"
    assert hide_password(url, 'password "s3cr@t" refused') == 'password "***" refused'
