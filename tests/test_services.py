"""The distributed mode's test servers (tests/services.py) are real, separate per test
where they must be, and gone once stopped: their PIDs end and their ports refuse."""

from __future__ import annotations

import socket

import psycopg
import pytest
import redis

from tests.conftest import skip_unless_installed
from tests.services import (
    PostgresServer,
    RedisServer,
    free_port,
    pid_alive,
    port_accepts,
    postgres_missing,
    redis_missing,
)


def test_a_fresh_database_takes_a_table_and_gives_its_rows_back(pg_url):
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE jobs (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO jobs (name) VALUES (%s), (%s)", ("web", "db"))
        rows = conn.execute("SELECT id, name FROM jobs ORDER BY id").fetchall()
    assert rows == [(1, "web"), (2, "db")]


def test_each_fresh_database_starts_empty(postgres_server):
    first, second = postgres_server.fresh_database(), postgres_server.fresh_database()
    assert first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE seen (x int)")
    with psycopg.connect(second) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchall() == []


def test_redis_sets_and_gets_in_an_emptied_database(redis_url, redis_server):
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("job:1", "Running")
        assert client.get("job:1") == b"Running"
    finally:
        client.close()
    db = int(redis_url.rsplit("/", 1)[1])
    assert redis_server.cli("get", "job:1", db=db) == "Running"


@pytest.mark.parametrize(
    ("server_class", "missing"),
    [(PostgresServer, postgres_missing), (RedisServer, redis_missing)],
    ids=["postgres", "redis"],
)
def test_a_stopped_server_is_gone_its_port_refuses_and_its_directory_removed(server_class, missing):
    skip_unless_installed(missing())
    server = server_class()
    server.start()
    pid, port, directory = server.pid, server.port, server.directory
    try:
        assert pid is not None and pid_alive(pid)
        assert port_accepts(port)
    finally:
        server.stop()
    assert not pid_alive(pid)
    assert not port_accepts(port)
    assert not directory.exists()


def test_redis_takes_the_next_port_when_its_first_is_taken():
    skip_unless_installed(redis_missing())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with RedisServer(ports=[busy, free_port()]) as server:
            assert server.port != busy
            assert server.cli("ping") == "PONG"


def test_postgres_takes_the_next_port_when_its_first_is_taken(postgres_server):
    with PostgresServer(ports=[postgres_server.port, free_port()]) as server:
        assert server.port != postgres_server.port
        assert server.psql("SELECT 41 + 1").strip() == "42"
