"""`eodes-node backup` and `restore` refusals, without a node: a PostgreSQL store names
pg_dump instead of copying anything, a restore refuses a file that is not a store of
this node, and a backup of an idle store restores to the same rows."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from eodes_node.adapters.sql import backup as files
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


SECRET = "S3cr3tPW"


def test_no_command_shows_the_store_password(tmp_path: Path) -> None:
    """The password may come apart from the url (a file) and is put into it at load."""
    secret = tmp_path / "store.password"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    env = {"EODES_STORE_PASSWORD_FILE": str(secret)}
    outputs = []
    for url, command in (
        ("postgres://eodes@db/eodes", ["backup", "--to", str(tmp_path / "b.db")]),
        ("postgres://eodes@db/eodes", ["restore", "--from", str(tmp_path / "b.db")]),
        ("postgresql+psycopg://eodes@db/eodes", ["backup", "--to", str(tmp_path / "b.db")]),
        ("postgres://eodes@db/eodes", ["prune", "--before", "2001-01-01", "--discard"]),
        ("postgresql+nosuch://eodes@db/eodes", ["prune", "--before", "2001-01-01", "--discard"]),
    ):
        cfg = config(tmp_path, url)
        result = CliRunner().invoke(main, [*command, "--config", str(cfg)], env=env)
        assert result.exit_code == 1, result.output
        assert "eodes:***@db" in result.output
        outputs.append(result.output)
    assert not [out for out in outputs if SECRET in out or "Traceback" in out]


def _store_with_an_old_unsettled_message(db: Path, created_at: float) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE certificates (number TEXT)")
        conn.execute("CREATE TABLE certificate_history (id INTEGER)")
        conn.execute(
            "CREATE TABLE outbound_messages (message_id TEXT, status TEXT, created_at REAL)"
        )
        conn.execute("INSERT INTO certificates VALUES ('KR-1')")
        conn.execute("INSERT INTO outbound_messages VALUES ('old', 'pending', ?)", (created_at,))
        conn.execute("INSERT INTO outbound_messages VALUES ('done', 'delivered', 0)")
        conn.commit()


def test_restore_warns_of_unsettled_messages_the_partner_will_find_too_old(
    tmp_path: Path,
) -> None:
    db = tmp_path / "node.db"
    _store_with_an_old_unsettled_message(db, time.time() - 8 * 86400)
    cfg = config(tmp_path, f"sqlite:///{db}")
    backup = tmp_path / "b.db"
    assert run("backup", "--config", str(cfg), "--to", str(backup))[0] == 0
    code, out = run("restore", "--config", str(cfg), "--from", str(backup))
    assert code == 0, out
    assert "warning: 1 unsent or unsettled message(s) in the backup are older than" in out
    assert "limits.max_age_s = 604800 s" in out
    # Within the window: nothing to warn of.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _store_with_an_old_unsettled_message(fresh / "node.db", time.time() - 86400)
    cfg = config(fresh, f"sqlite:///{fresh / 'node.db'}")
    assert run("backup", "--config", str(cfg), "--to", str(fresh / "b.db"))[0] == 0
    code, out = run("restore", "--config", str(cfg), "--from", str(fresh / "b.db"))
    assert code == 0, out
    assert "warning" not in out


def test_a_restore_cut_short_before_the_rename_leaves_the_store_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "node.db"
    _store_with_an_old_unsettled_message(db, 0)
    backup = tmp_path / "b.db"
    files.backup(db, backup)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("INSERT INTO certificates VALUES ('KR-2')")
        conn.commit()
    replace = os.replace

    def power_cut(source: Any, target: Any) -> None:
        if str(source).endswith(".restoring"):
            raise OSError("power cut")
        replace(source, target)

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(files.BackupError, match="power cut"):
        files.restore(db, backup)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM certificates").fetchone() == (2,)
    monkeypatch.setattr(os, "replace", replace)
    restored, aside = files.restore(db, backup)
    assert restored.certificates == 1
    assert aside is not None
    with closing(sqlite3.connect(aside)) as conn:
        assert conn.execute("SELECT count(*) FROM certificates").fetchone() == (2,)
