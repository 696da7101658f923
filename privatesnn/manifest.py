"""Provenance manifests: every artifact is a file plus ``<file>.manifest.json``.

Paths of parent artifacts are written relative to the manifest's own folder (no absolute paths of
the machine that made them; a run folder can be moved or shared) and resolved again when read.

The chain of manifests (ANN -> synthetic set -> converted SNN -> private SNN -> export) is the
proof that the private path never read real data: each records ``real_data_read`` and the
SHA-256 of its inputs and of itself.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ArtifactError
from .io_utils import relative_path, sha256_file, write_json

MANIFEST_SUFFIX = ".manifest.json"
FORMAT = "privsnn-manifest/1"


def manifest_path(artifact: str | Path) -> Path:
    """Where the manifest of ``artifact`` lives (a sibling file; for a directory, inside it)."""
    artifact = Path(artifact)
    if artifact.is_dir():
        return artifact / "manifest.json"
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


@dataclass
class Manifest:
    """What made an artifact, from what, and whether real data was read on the way."""

    kind: str  # "synthetic", "snn", "private-snn", "nir", "lava", "onnx", ...
    command: str
    settings: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # role -> sha256
    real_data_read: bool = False
    private: bool = True
    seed: int | None = None
    sha256: str | None = None  # of the artifact file itself
    parents: list[dict[str, Any]] = field(default_factory=list)  # manifests of inputs, for the chain
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    versions: dict[str, str] = field(default_factory=lambda: _versions())
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "Manifest":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ArtifactError(f"{source}: not a privsnn manifest (expected format {FORMAT!r})")
        known = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as e:
            raise ArtifactError(f"{source}: incomplete manifest ({e})") from None

    def write_for(self, artifact: str | Path) -> Path:
        """Hash ``artifact`` and write this manifest next to it (atomically)."""
        artifact = Path(artifact)
        if artifact.is_file():
            self.sha256 = sha256_file(artifact)
        where = manifest_path(artifact)
        d = self.to_dict()
        d["parents"] = _map_paths(d["parents"], lambda p: relative_path(p, where.parent))
        return write_json(where, d)


def read_manifest(artifact: str | Path) -> Manifest | None:
    """The manifest of ``artifact``, or None when it has none."""
    p = manifest_path(artifact)
    if not p.exists():
        return None
    try:
        m = Manifest.from_dict(json.loads(p.read_text()), str(p))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{p}: manifest is not valid JSON ({e})") from None
    # paths are stored relative to the manifest's folder (portable); in memory they are usable as they are
    m.parents = _map_paths(m.parents, lambda q: str((p.parent / q).resolve()))
    return m


def check_export_files(folder: str | Path, manifest: Manifest) -> list[str]:
    """Problems with an export folder's files against the SHA-256s its manifest records."""
    folder = Path(folder)
    problems = []
    for name, digest in (manifest.settings.get("files") or {}).items():
        f = folder / name
        if not f.is_file():
            problems.append(f"{f}: missing (the export's manifest lists it)")
        elif sha256_file(f) != digest:
            problems.append(f"{f}: content does not match the SHA-256 in {folder / 'manifest.json'} "
                            f"(damaged or modified after export)")
    return problems


def parent_entry(artifact: str | Path, role: str) -> dict[str, Any]:
    """A compact record of an input artifact (role, path, hash, and its own manifest if any)."""
    artifact = Path(artifact)
    m = read_manifest(artifact) if artifact.exists() else None
    md = m.to_dict() if m else None
    return {
        "role": role,
        "path": str(artifact.resolve()),  # written relative to the new manifest's folder by write_for
        "sha256": sha256_file(artifact) if artifact.is_file() else None,
        "manifest": md,
    }


def _map_paths(obj: Any, fn) -> Any:
    """Apply ``fn`` to every ``"path"`` string in a nest of parent entries (and their manifests)."""
    if isinstance(obj, list):
        return [_map_paths(v, fn) for v in obj]
    if isinstance(obj, dict):
        return {k: (fn(v) if k == "path" and isinstance(v, str) else _map_paths(v, fn)) for k, v in obj.items()}
    return obj


def _versions() -> dict[str, str]:
    out = {"privsnn": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "norse", "nir"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "__version__"):
            out[name] = str(mod.__version__)
    return out
