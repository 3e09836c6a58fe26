"""The checkpoint store: units are reused only when finished, intact and of the same inputs."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal.classifier.checkpoints import (
    MANIFEST, UnitStore, dependency_versions, fingerprint, library_digest,
)

# A unit's files: relative paths (one or two levels) and their bytes.
_names = st.text(alphabet="abcdefghij_0123456789", min_size=1, max_size=8)
_trees = st.dictionaries(st.tuples(_names, st.one_of(st.none(), _names)), st.binary(max_size=300),
                         min_size=1, max_size=6)
_fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _writer(tree):
    def write(directory: Path):
        for (top, inner), content in tree.items():
            path = directory / top / inner if inner else directory / f"{top}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    return write


def _files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*")
            if p.is_file() and p.name != MANIFEST}


@_fast
@given(tree=_trees)
def test_a_saved_unit_is_reused_with_its_files(tmp_path_factory, tree):
    store = UnitStore(tmp_path_factory.mktemp("store"))
    written = store.save("member-text", "f1", _writer(tree))
    expected = _files(written)
    again = UnitStore(store.root)
    assert again.load("member-text", "f1") == written
    assert _files(written) == expected
    assert again.resumed == ["member-text"] and not again.discarded


@_fast
@given(tree=_trees, data=st.data())
def test_any_damage_to_a_unit_is_detected_and_the_unit_removed(tmp_path_factory, tree, data):
    store = UnitStore(tmp_path_factory.mktemp("store"))
    unit = store.save("unit", "f1", _writer(tree))
    files = sorted(p for p in unit.rglob("*") if p.is_file() and p.name != MANIFEST)
    damage = data.draw(st.sampled_from(["flip", "truncate", "append", "delete", "add", "manifest"]))
    target = data.draw(st.sampled_from(files))
    content = target.read_bytes()
    if damage == "flip" and content:
        at = data.draw(st.integers(0, len(content) - 1))
        target.write_bytes(content[:at] + bytes([content[at] ^ 0xFF]) + content[at + 1:])
    elif damage == "truncate" and content:
        target.write_bytes(content[:-1])
    elif damage == "delete":
        target.unlink()
    elif damage == "add":
        (unit / "stray.tmp").write_bytes(b"x")
    elif damage == "manifest":
        (unit / MANIFEST).write_text("{not json")
    else:
        target.write_bytes(content + b"\0")
    reader = UnitStore(store.root)
    assert reader.load("unit", "f1") is None
    assert reader.discarded == ["unit"] and not unit.exists()


def test_a_unit_its_reader_cannot_read_is_discarded_and_an_interruption_is_not_swallowed(tmp_path, caplog):
    store = UnitStore(tmp_path)
    store.save("unit", "f1", lambda d: (d / "w.bin").write_bytes(b"123"))
    assert UnitStore(tmp_path).read("unit", "f1", lambda d: (d / "w.bin").read_bytes()) == b"123"

    def unreadable(directory: Path):
        raise ValueError("not what the reader expects")

    reader = UnitStore(tmp_path)
    assert reader.read("unit", "f1", unreadable) is None
    assert reader.resumed == [] and reader.discarded == ["unit"] and not (tmp_path / "unit").exists()
    assert "checkpoint unit 'unit' is not reused (it could not be read: ValueError: not what" in caplog.text
    assert UnitStore(tmp_path).read("missing", "f1", unreadable) is None

    store.save("unit", "f1", lambda d: (d / "w.bin").write_bytes(b"123"))

    def stopped(directory: Path):
        raise KeyboardInterrupt   # as the training job's SIGTERM (a BaseException): the job stops

    with pytest.raises(KeyboardInterrupt):
        UnitStore(tmp_path).read("unit", "f1", stopped)
    assert (tmp_path / "unit" / MANIFEST).exists()


def test_a_changed_fingerprint_discards_the_unit(tmp_path):
    store = UnitStore(tmp_path)
    store.save("fusion", fingerprint(epochs=100, seed=0), lambda d: (d / "w.bin").write_bytes(b"123"))
    assert store.load("fusion", fingerprint(seed=0, epochs=100)) is not None, "key order does not matter"
    assert store.load("fusion", fingerprint(epochs=101, seed=0)) is None
    assert not (tmp_path / "fusion").exists()


def test_a_failed_write_leaves_no_unit_and_keeps_the_previous_one_only_until_replaced(tmp_path):
    store = UnitStore(tmp_path)
    store.save("unit", "old", lambda d: (d / "a").write_bytes(b"old"))

    def broken(directory: Path):
        (directory / "a").write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        store.save("unit", "new", broken)
    assert [p.name for p in tmp_path.iterdir()] == ["unit"], "no temporary directory is left behind"
    assert (tmp_path / "unit" / "a").read_bytes() == b"old"
    store.save("unit", "new", lambda d: (d / "a").write_bytes(b"new"))
    assert store.load("unit", "new") is not None and (tmp_path / "unit" / "a").read_bytes() == b"new"


def _write_slowly_then_hang(root: str, started):
    store = UnitStore(Path(root))

    def write(directory: Path):
        (directory / "part").write_bytes(b"x" * 1000)
        started.set()
        time.sleep(60)

    store.save("embedding-photo-000", "f", write)


def test_a_writer_killed_mid_unit_leaves_nothing_that_is_reused(tmp_path):
    started = multiprocessing.get_context("spawn").Event()
    process = multiprocessing.get_context("spawn").Process(target=_write_slowly_then_hang,
                                                           args=(str(tmp_path), started))
    process.start()
    assert started.wait(60)
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    store = UnitStore(tmp_path)
    assert store.load("embedding-photo-000", "f") is None and not store.discarded
    store.sweep()
    assert list(tmp_path.iterdir()) == []


def _save_unit(root: str, content: bytes):
    UnitStore(Path(root)).save("member-joint", "f", lambda d: (d / "model.bin").write_bytes(content * 10_000))


def test_two_processes_writing_the_same_unit_leave_one_whole_unit(tmp_path):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_save_unit, args=(str(tmp_path), bytes([i]))) for i in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert all(process.exitcode == 0 for process in processes)
    store = UnitStore(tmp_path)
    unit = store.load("member-joint", "f")
    assert unit is not None and (unit / "model.bin").read_bytes() in (b"\0" * 10_000, b"\1" * 10_000)
    store.sweep()
    assert [p.name for p in tmp_path.iterdir()] == ["member-joint"]


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", " padded"])
def test_unit_names_are_plain(tmp_path, name):
    with pytest.raises(ValueError):
        UnitStore(tmp_path).unit_dir(name)


def test_a_unit_may_not_write_the_manifest(tmp_path):
    with pytest.raises(ValueError, match=MANIFEST):
        UnitStore(tmp_path).save("unit", "f", lambda d: (d / MANIFEST).write_text("{}"))
    assert list(tmp_path.iterdir()) == []


def test_the_summary_and_the_versions_say_what_they_hold(tmp_path):
    store = UnitStore(tmp_path)
    store.save("member-num", "f", lambda d: (d / "m").write_bytes(b"12345"))
    assert store.load("member-text", "f") is None
    assert "computed 1 (member-num)" in store.summary() and "resumed 0 (none)" in store.summary()
    assert store.size_bytes() == 5 + (tmp_path / "member-num" / MANIFEST).stat().st_size
    versions = dependency_versions()
    assert versions["autogluon.tabular"] != "absent" and versions["torch"] != "absent"
    assert versions["xgboost"] != "absent", "found under the wheel's other name (xgboost-cpu)"
    assert len(library_digest()) == 64 and library_digest() == library_digest()
    assert json.loads((tmp_path / "member-num" / MANIFEST).read_text())["files"]["m"]["bytes"] == 5


def test_a_unit_sealed_by_another_writer_meanwhile_leaves_one_whole_unit(tmp_path):
    store, other = UnitStore(tmp_path), UnitStore(tmp_path)

    def write(directory: Path):
        (directory / "mine").write_bytes(b"1")
        other.save("member-joint", "f", lambda d: (d / "theirs").write_bytes(b"2"))

    unit = store.save("member-joint", "f", write)
    assert store.load("member-joint", "f") == unit, "the last writer's unit stays, whole"
    assert sorted(p.name for p in unit.iterdir()) in (["UNIT.json", "mine"], ["UNIT.json", "theirs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member-joint"]


def test_when_the_other_writer_wins_the_rename_its_unit_is_kept(tmp_path, monkeypatch):
    other = UnitStore(tmp_path)
    store = UnitStore(tmp_path)
    # The other writer seals its unit between this writer's check and its rename.
    monkeypatch.setattr(store, "_retire", lambda directory: None)
    other.save("member-joint", "f", lambda d: (d / "theirs").write_bytes(b"2"))
    unit = store.save("member-joint", "f", lambda d: (d / "mine").write_bytes(b"1"))
    assert (unit / "theirs").exists() and not (unit / "mine").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member-joint"]
    with pytest.raises(OSError):   # a unit of other inputs is never taken for this one
        store.save("member-joint", "g", lambda d: (d / "mine").write_bytes(b"1"))
