"""Atomic writes and provenance manifests."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from privatesnn.errors import ArtifactError
from privatesnn.io_utils import atomic_write, sha256_file, torch_save, write_json
from privatesnn.manifest import FORMAT, Manifest, manifest_path, parent_entry, read_manifest


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


class _Boom(RuntimeError):
    pass


def test_failed_write_leaves_destination_and_no_temp_file(tmp_path):
    dest = tmp_path / "result.json"
    dest.write_text("old content\n")
    seen = {}

    def writer(tmp):
        seen["tmp"] = tmp
        tmp.write_text("half of the new con")
        raise _Boom("disk full")

    with pytest.raises(_Boom):
        atomic_write(dest, writer)
    assert dest.read_text() == "old content\n"
    assert seen["tmp"].parent == tmp_path and seen["tmp"] != dest
    assert not seen["tmp"].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_failed_write_to_new_path_creates_nothing(tmp_path):
    dest = tmp_path / "new" / "x.pt"
    def writer(tmp):
        raise _Boom("interrupted")

    with pytest.raises(_Boom):
        atomic_write(dest, writer)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_successful_write_replaces_atomically(tmp_path):
    dest = tmp_path / "r.json"
    dest.write_text("old")
    write_json(dest, {"a": 1, "t": torch.tensor([1.5, 2.0])})
    assert json.loads(dest.read_text()) == {"a": 1, "t": [1.5, 2.0]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_written_files_have_ordinary_permissions(tmp_path, umask_022):
    j = write_json(tmp_path / "r.json", {"x": 1})
    t = torch_save(tmp_path / "w.pt", {"w": torch.ones(2)})
    for p in (j, t):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, oct(p.stat().st_mode)
    assert torch.equal(torch.load(t, weights_only=True)["w"], torch.ones(2))


def test_manifest_round_trip(tmp_path):
    art = tmp_path / "snn.pt"
    art.write_bytes(b"weights")
    m = Manifest(kind="snn", command="convert", settings={"timesteps": 32, "threshold": "percentile:99.9"},
                 inputs={"ann": "ab" * 32}, seed=7, parents=[{"role": "ann", "path": str(tmp_path / "x"),
                                                               "sha256": None, "manifest": None}])
    path = m.write_for(art)
    assert path == manifest_path(art) == tmp_path / "snn.pt.manifest.json"
    assert m.sha256 == sha256_file(art)
    assert '"path": "x"' in path.read_text()  # stored relative to the manifest's folder
    back = read_manifest(art)
    assert back is not None and back == m  # and resolved again when read
    assert back.format == FORMAT and back.real_data_read is False and back.private is True
    assert back.versions["privsnn"] and back.versions["python"]
    # a directory artifact keeps its manifest inside
    d = tmp_path / "export"
    d.mkdir()
    assert manifest_path(d) == d / "manifest.json"


def test_no_manifest_is_none(tmp_path):
    art = tmp_path / "a.pt"
    art.write_bytes(b"x")
    assert read_manifest(art) is None


def test_parent_entry_chains_manifests(tmp_path):
    art = tmp_path / "syn.pt"
    art.write_bytes(b"images")
    Manifest(kind="synthetic", command="synthesize", settings={}).write_for(art)
    e = parent_entry(art, "synthetic")
    assert e["role"] == "synthetic" and e["sha256"] == sha256_file(art)
    assert e["manifest"]["kind"] == "synthetic"


@pytest.mark.parametrize("content", ['{"kind": "snn", ', "", "not json at all"])
def test_corrupted_manifest_json(tmp_path, content):
    art = tmp_path / "a.pt"
    art.write_bytes(b"x")
    manifest_path(art).write_text(content)
    with pytest.raises(ArtifactError, match="not valid JSON") as ei:
        read_manifest(art)
    assert str(manifest_path(art)) in str(ei.value)


@pytest.mark.parametrize("obj", [[1, 2], {"format": "other/1", "kind": "snn"}, {"kind": "snn"}])
def test_foreign_manifest(tmp_path, obj):
    art = tmp_path / "a.pt"
    art.write_bytes(b"x")
    manifest_path(art).write_text(json.dumps(obj))
    with pytest.raises(ArtifactError, match="not a privsnn manifest"):
        read_manifest(art)


def test_binary_garbage_manifest(tmp_path):
    art = tmp_path / "a.pt"
    art.write_bytes(b"x")
    manifest_path(art).write_bytes(b"\xff\xfe\x00\x9c garbage")
    with pytest.raises(ArtifactError):
        read_manifest(art)


def test_manifest_missing_required_fields(tmp_path):
    art = tmp_path / "a.pt"
    art.write_bytes(b"x")
    manifest_path(art).write_text(json.dumps({"format": FORMAT, "seed": 1}))
    with pytest.raises(ArtifactError):
        read_manifest(art)
