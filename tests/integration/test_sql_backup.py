"""`eodes-node backup` and `restore` refusals, without a node: a PostgreSQL store names
pg_dump instead of copying anything, a restore refuses a file that is not a store of
this node, and a backup of an idle store restores to the same rows."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import orjson
from click.testing import CliRunner

from eodes_node.cli import main


def config(root: Path, url: str) -> Path:
    path = root / "node.toml"
    path.write_text(
        '[node]\ncountry = "KR"\npartner = "CN"\n'
        '[broker]\nlocal_url = "amqp://x@localhost/"\npartner_url = "amqp://x@localhost/"\n'
        '[keys]\nprivate_key = "kr.key.pem"\npartner_jwks = "cn.jwks.json"\n'
        f"[store]\nurl = {orjson.dumps(url).decode()}\n"
    )
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_postgresql_store_is_backed_up_with_pg_dump_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, "postgresql+psycopg://node:secret@db.example:5432/eodes")
    code, out = run("backup", "--config", str(cfg), "--to", str(tmp_path / "b.db"))
    assert code == 1
    assert "pg_dump --format=custom" in out
    assert "secret" not in out
    assert not (tmp_path / "b.db").exists()
    code, out = run("restore", "--config", str(cfg), "--from", str(tmp_path / "b.db"))
    assert code == 1
    assert "pg_restore" in out


def test_restore_refuses_what_is_not_a_store_and_leaves_the_store_alone(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE certificates (number TEXT)")
        conn.execute("CREATE TABLE certificate_history (id INTEGER)")
        conn.execute("CREATE TABLE outbound_messages (message_id TEXT)")
        conn.execute("INSERT INTO certificates VALUES ('KR-1')")
        conn.commit()
    cfg = config(tmp_path, f"sqlite:///{db}")
    text = tmp_path / "notes.txt"
    text.write_text("not a database, long enough to be read as one " * 20)
    code, out = run("restore", "--config", str(cfg), "--from", str(text))
    assert code == 1
    assert "is not a SQLite store" in out
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE certificates (number TEXT)")
    code, out = run("restore", "--config", str(cfg), "--from", str(other))
    assert "is not a store of this node: no certificate_history, outbound_messages" in out
    code, out = run("restore", "--config", str(cfg), "--from", str(tmp_path / "missing.db"))
    assert "does not exist" in out

    backup = tmp_path / "backups" / "node.db"
    code, out = run("backup", "--config", str(cfg), "--to", str(backup))
    assert code == 0, out
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("INSERT INTO certificates VALUES ('KR-2')")
        conn.commit()
    code, out = run("restore", "--config", str(cfg), "--from", str(backup))
    assert code == 0, out
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT number FROM certificates").fetchall() == [("KR-1",)]
    (aside,) = tmp_path.glob("node.db.before-restore-*")
    with closing(sqlite3.connect(aside)) as conn:
        assert conn.execute("SELECT count(*) FROM certificates").fetchone() == (2,)
