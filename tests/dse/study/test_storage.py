"""Storage choices: journal (default), SQLite, PostgreSQL; torn journal repair; --storage parsing."""

from __future__ import annotations

import os
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


def test_journal_lock_of_a_killed_writer_does_not_stall(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    open_study(folder, tiny_config(), create=True)
    # Optuna's default symlink lock would be left behind by kill -9 and stall writers for 30 s;
    # ours is an flock on a plain file, which a dead process cannot hold.
    assert (folder.path / "study.journal.flock").is_file()
    assert not (folder.path / "study.journal.lock").exists()


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
