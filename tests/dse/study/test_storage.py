"""Storage choices: journal (default), SQLite, PostgreSQL; torn journal repair; --storage parsing."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from dse.config import StorageConfig
from dse.errors import ConfigError, DSEError
from dse.study.engine import StudyFolder, count_complete, open_study, run_study
from dse.study.storage import display_url, repair_journal, resolve_storage_url, storage_option

from .conftest import tiny_config, tiny_context

POSTGRES_URL = os.environ.get("DSE_TEST_POSTGRES_URL")


def test_torn_last_record_is_dropped_and_the_study_stays_writable(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    config = tiny_config(n_trials=2)
    run_study(folder, config, context=tiny_context(folder.cache))
    good = folder.journal.read_bytes()
    torn = b'{"op_code": 5, "worker_id": "x", "trial_id"'  # a writer killed mid-append
    folder.journal.write_bytes(good + torn)
    assert repair_journal(folder.journal) == len(torn)
    assert folder.journal.read_bytes() == good
    assert repair_journal(folder.journal) == 0  # idempotent on a clean journal
    folder.journal.write_bytes(good + b'{"op_code": 5')
    stats = run_study(folder, tiny_config(n_trials=2), n_trials=4, context=tiny_context(folder.cache))
    assert stats.completed == 4  # resumed past the torn record and appended after it
    assert count_complete(open_study(folder, config, create=False)) == 4


def test_journal_lock_of_a_killed_writer_is_taken_over(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    config = tiny_config(n_trials=2)
    run_study(folder, config, context=tiny_context(folder.cache))
    # Optuna's default symlink lock would be left behind by kill -9 and stall writers for 30 s;
    # ours is an flock on a plain file, which a dead process cannot hold.
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        import optuna
        from dse.study.storage import storage_from_url
        storage = storage_from_url("journal:{folder.journal}")
        study = optuna.load_study(study_name=None, storage=storage)
        study.set_user_attr("writer", "killed")  # a record written through the journal
        storage._backend._lock.acquire()  # the storage's own lock, held as if killed mid-append
        print("locked", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    lock_file = folder.path / "study.journal.flock"
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
        with open(lock_file, "ab") as fh, pytest.raises(BlockingIOError):
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # really held by the writer
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    with open(lock_file, "ab") as fh:  # free at once: no stale lock to wait out
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert not (folder.path / "study.journal.lock").exists()
    # the next writer goes on, and nothing written before the kill is lost
    start = time.monotonic()
    stats = run_study(folder, config, n_trials=3, context=tiny_context(folder.cache))
    assert time.monotonic() - start < 30 and stats.completed == 3
    study = open_study(folder, config, create=False)
    assert study.user_attrs["writer"] == "killed" and count_complete(study) == 3


def _run_and_reopen(tmp_path: Path, storage: StorageConfig, name: str) -> None:
    folder = StudyFolder(tmp_path / name)
    config = tiny_config(name=name, n_trials=3, storage=storage.model_dump())
    stats = run_study(folder, config, context=tiny_context(folder.cache))
    assert stats.completed == 3
    study = open_study(folder, folder.load_config(), create=False)
    assert count_complete(study) == 3
    assert all(t.state == TrialState.COMPLETE and "metrics" in t.user_attrs for t in study.trials)
    assert not folder.journal.exists()
    # a second run on the same folder continues the same study in the same database
    assert run_study(folder, config, n_trials=4, context=tiny_context(folder.cache)).completed == 4
    # the folder's storage wins over a definition that does not name one ...
    plain = tiny_config(name=name, n_trials=3)
    assert count_complete(open_study(folder, plain, create=False)) == 4
    # ... and one naming another storage is refused
    with pytest.raises(DSEError, match="keeps its trials in"):
        open_study(folder, tiny_config(name=name, n_trials=3, storage={"kind": "journal"}), create=True)


def test_sqlite_storage(tmp_path: Path) -> None:
    _run_and_reopen(tmp_path, StorageConfig(kind="sqlite"), "lite")
    assert (tmp_path / "lite" / "study.db").is_file()


@pytest.fixture
def postgres_url() -> str:
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("DSE_TEST_POSTGRES_URL is not set in CI (.ci/run starts a PostgreSQL server)")
        pytest.skip("DSE_TEST_POSTGRES_URL not set (a PostgreSQL server for this test)")
    return POSTGRES_URL


def test_postgresql_storage(tmp_path: Path, postgres_url: str) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"  # the database outlives the test
    _run_and_reopen(tmp_path, StorageConfig(kind="postgresql", url=postgres_url), name)


def test_postgresql_study_belongs_to_one_results_folder(tmp_path: Path, postgres_url: str) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    config = tiny_config(name=name, storage={"kind": "postgresql", "url": postgres_url})
    open_study(StudyFolder(tmp_path / "a" / name), config, create=True)
    with pytest.raises(DSEError, match="already holds study .* for results folder"):
        open_study(StudyFolder(tmp_path / "b" / name), config, create=True)


def test_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://dse:secret@127.0.0.1:1/nowhere"
    config = tiny_config(storage={"kind": "postgresql", "url": url})
    with pytest.raises(DSEError, match=r"^cannot open storage postgresql\+psycopg2://dse:\*\*\*@127.0.0.1:1/nowhere: ") as err:
        open_study(StudyFolder(tmp_path / "unit"), config, create=True)
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


def test_storage_option_and_urls(tmp_path: Path) -> None:
    assert storage_option("journal") == StorageConfig()
    assert storage_option("sqlite") == StorageConfig(kind="sqlite")
    assert storage_option("sqlite:////x/y.db").url == "sqlite:////x/y.db"
    assert storage_option("postgresql://u@h/db").kind == "postgresql"
    for bad in ("mysql://u@h/db", "", "redis://h"):
        with pytest.raises(ConfigError, match="--storage"):
            storage_option(bad)
    assert resolve_storage_url(tmp_path, None) == f"journal:{tmp_path / 'study.journal'}"
    assert resolve_storage_url(tmp_path, StorageConfig(kind="sqlite")) == f"sqlite:///{tmp_path.resolve() / 'study.db'}"
    assert display_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    with pytest.raises(ValueError, match="needs a url"):
        StorageConfig(kind="postgresql")
    with pytest.raises(ValueError, match="takes no url"):
        StorageConfig(kind="journal", url="sqlite:///x")


def _damage_middle(journal: Path, garbage: bytes) -> None:
    data = journal.read_bytes()
    middle = len(data) // 2
    journal.write_bytes(data[:middle] + garbage + data[middle:])


@pytest.mark.parametrize("garbage", [bytes(range(256))[97:161], b"\xff\xfe\n\x00garbage\n{\"op", b"\n[1, 2]\n"],
                         ids=["random-64-bytes", "newlines-and-non-utf8", "json-not-a-record"])
def test_a_journal_damaged_in_the_middle_keeps_every_intact_record(
        tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    folder = StudyFolder(tmp_path / "unit")
    config = tiny_config(n_trials=6)
    run_study(folder, config, context=tiny_context(folder.cache))
    before = {t.number: (t.params, t.values) for t in open_study(folder, config, create=False).trials}
    original = folder.journal.read_bytes()
    _damage_middle(folder.journal, garbage)
    damaged = folder.journal.read_bytes()
    study = open_study(folder, config, create=False)  # a reader: status, pareto, export
    after = {t.number: (t.params, t.values) for t in study.trials if t.state == TrialState.COMPLETE}
    # every trial whose records were intact is there, under its own number and with its own values
    assert len(after) >= len(before) - 1 and all(before[n] == v for n, v in after.items())
    assert "dropped unreadable lines" in caplog.text
    copies = list(folder.path.glob("study.journal.damaged-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == damaged
    assert len(folder.journal.read_bytes()) <= len(original)
    # and the study continues where it was
    stats = run_study(folder, config, n_trials=8, context=tiny_context(folder.cache))
    assert stats.completed == 8


def test_a_journal_that_lost_a_trial_creation_record_keeps_the_later_trials_numbered(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    config = tiny_config(n_trials=4)
    run_study(folder, config, context=tiny_context(folder.cache))
    before = {t.number: (t.params, t.values) for t in open_study(folder, config, create=False).trials}
    lines = folder.journal.read_bytes().split(b"\n")
    second_create = [i for i, line in enumerate(lines) if line.startswith(b'{"op_code":4')][1]
    lines[second_create] = b"\x00" * 20  # trial 1's creation record is unreadable
    folder.journal.write_bytes(b"\n".join(lines))
    after = {t.number: (t.params, t.values) for t in open_study(folder, config, create=False).trials}
    assert after == before  # trial 1 too: its params and values were in later, intact records


def _edit_storage(folder: StudyFolder, storage: dict | None) -> None:
    import yaml

    data = yaml.safe_load(folder.config.read_text())
    if storage is None:
        data.pop("storage", None)
    else:
        data["storage"] = storage
    folder.config.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "folder-from-before-storage-json"])
def test_an_edited_storage_in_config_yaml_is_refused(tmp_path: Path, sealed: bool) -> None:
    folder = StudyFolder(tmp_path / "unit")
    config = tiny_config(n_trials=2)
    run_study(folder, config, context=tiny_context(folder.cache))
    assert json.loads(folder.storage_seal.read_text()) == {"kind": "journal", "url": None}
    if not sealed:
        folder.storage_seal.unlink()
    journal = folder.journal.read_bytes()
    _edit_storage(folder, {"kind": "sqlite", "url": f"sqlite:///{tmp_path / 'elsewhere.db'}"})
    for reopen in (lambda: folder.load_config(),
                   lambda: run_study(folder, config, n_trials=3, context=tiny_context(folder.cache))):
        with pytest.raises(DSEError, match="storage was changed to sqlite:.*but this folder's trials are in journal"):
            reopen()
    assert not (tmp_path / "elsewhere.db").exists() and folder.journal.read_bytes() == journal
    _edit_storage(folder, None)  # restored: the study opens again
    assert count_complete(open_study(folder, folder.load_config(), create=False)) == 2


def test_a_damaged_storage_seal_is_one_line(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    open_study(folder, tiny_config(), create=True)
    folder.storage_seal.write_bytes(b"\x80\x03garbage")
    with pytest.raises(DSEError, match="storage.json is damaged .*restore it from a backup"):
        folder.load_config()


def test_the_journal_fsyncs_once_per_finished_trial_and_every_write_is_visible_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from dse.study.storage import storage_from_url

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=storage_from_url(f"journal:{path}"), study_name="s")
    synced.clear()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for i in range(5):
        trial.set_user_attr(f"a{i}", i)
    other = optuna.load_study(storage=storage_from_url(f"journal:{path}"), study_name="s")
    assert other.trials[0].user_attrs == {f"a{i}": i for i in range(5)}  # written, not held back
    assert synced == []  # a running trial's operations: no fsync
    study.tell(trial, 0.5)
    assert len(synced) == 1  # the finished trial: one fsync, which makes the attributes durable too
    assert optuna.load_study(storage=storage_from_url(f"journal:{path}"), study_name="s").trials[0].state \
        == TrialState.COMPLETE
