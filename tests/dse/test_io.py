"""The atomic-write helpers (dse.io): unique temporary names, fsync, rename, no leftovers on failure."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from dse import io as dse_io
from dse.io import atomic_folder, atomic_write, write_bytes_atomic, write_text_atomic


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_text_and_bytes_land_whole_and_replace_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "table.csv"  # the parent folder is created
    write_text_atomic(target, "a,b\n1,2\n")
    assert target.read_text() == "a,b\n1,2\n"
    write_text_atomic(target, "a,b\n3,4\n")
    assert target.read_text() == "a,b\n3,4\n"
    write_bytes_atomic(tmp_path / "blob.bin", b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert _names(tmp_path / "sub") == {"table.csv"}  # no temporary file left


def test_the_target_is_untouched_until_the_write_completes(tmp_path: Path) -> None:
    target = tmp_path / "design.json"
    target.write_text("old")
    with atomic_write(target) as fh:
        fh.write("new")
        fh.flush()
        assert target.read_text() == "old"  # a reader still sees the complete old file
        temps = [p for p in tmp_path.iterdir() if p != target]
        assert len(temps) == 1 and temps[0].name.startswith(".design.json.") and temps[0].name.endswith(".tmp")
    assert target.read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "pareto.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _names(tmp_path) == {"pareto.csv"}


def test_temporary_names_are_unique_per_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    original = dse_io._temp_name

    def record(target: Path) -> Path:
        seen.append(original(target))
        return seen[-1]

    monkeypatch.setattr(dse_io, "_temp_name", record)
    target = tmp_path / "trials.csv"
    with atomic_write(target) as first, atomic_write(target) as second:  # two writers at once
        first.write("first")
        second.write("second")
    assert len(set(seen)) == 2 and all(p.parent == tmp_path for p in seen)
    assert target.read_text() == "first"  # the last rename wins; both were complete files
    assert _names(tmp_path) == {"trials.csv"}


def test_concurrent_writers_never_leave_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "hypervolume.csv"
    texts = [str(i) * 20_000 for i in range(8)]
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(5):
                write_text_atomic(target, text)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert target.read_text() in texts
    assert _names(tmp_path) == {"hypervolume.csv"}


def test_new_files_get_the_usual_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_mode_must_be_a_write_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):  # type: ignore[arg-type]
            pass


def test_folder_is_replaced_as_a_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("{}")
        assert not target.exists()
    assert _names(target) == {"config.json"}
    with atomic_folder(target) as tmp:  # the old folder goes, with files the new one lacks
        (tmp / "weights.bin").write_bytes(b"w")
    assert _names(target) == {"weights.bin"}
    assert _names(tmp_path) == {"model"}


def test_failed_folder_write_leaves_the_old_folder_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("old")
    with pytest.raises(OSError):
        with atomic_folder(target) as tmp:
            (tmp / "config.json").write_text("new")
            raise OSError("disk full")
    assert (target / "config.json").read_text() == "old"
    assert _names(tmp_path) == {"model"}


def test_keep_lets_the_first_complete_folder_win(tmp_path: Path) -> None:
    target = tmp_path / "prepared"
    with atomic_folder(target, if_exists="keep") as tmp:
        (tmp / "info.json").write_text("first")
    with atomic_folder(target, if_exists="keep") as tmp:  # another process computed the same
        (tmp / "info.json").write_text("second")
    assert (target / "info.json").read_text() == "first"
    assert _names(tmp_path) == {"prepared"}


def test_a_file_in_the_way_of_a_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.write_text("not a folder")
    with pytest.raises(NotADirectoryError):
        with atomic_folder(target) as tmp:
            (tmp / "config.json").write_text("{}")
    assert target.read_text() == "not a folder"
    assert _names(tmp_path) == {"model"}


def test_stale_temps_of_a_killed_writer_are_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    import subprocess

    from dse.io import remove_stale_temps

    proc = subprocess.Popen(["sleep", "0"])  # noqa: S607
    proc.wait()
    stale = tmp_path / f".model.{proc.pid}-0123abcd.tmp"
    (stale / "backbone").mkdir(parents=True)
    (stale / "backbone" / "model.safetensors").write_bytes(b"x" * 1000)
    live = tmp_path / f".model.{os.getpid()}-0123abcd.tmp"
    live.mkdir()
    user = tmp_path / ".notes.tmp"  # not one of ours: no pid-token
    user.write_text("mine")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and user.exists()


def test_read_guarded_names_a_damaged_file_and_leaves_a_missing_one_to_the_caller(tmp_path: Path) -> None:
    import json

    from dse.io import DamagedFileError, read_guarded

    def load(p: Path) -> object:
        return json.loads(p.read_text(encoding="utf-8"))

    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert read_guarded(good, load) == {"a": 1}
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DamagedFileError) as info:
        read_guarded(bad, load)
    assert str(info.value).startswith(f"{bad} is damaged or unreadable (UnicodeDecodeError")
    assert "\n" not in str(info.value) and isinstance(info.value.cause, UnicodeDecodeError)
    with pytest.raises(FileNotFoundError):  # missing: the caller says so in its own words
        read_guarded(tmp_path / "nope.json", load)
    folder = tmp_path / "checkpoint"
    folder.mkdir()  # a folder read as a whole whose inner file is missing: damaged, not missing
    with pytest.raises(DamagedFileError):
        read_guarded(folder, lambda p: load(p / "info.json"))
