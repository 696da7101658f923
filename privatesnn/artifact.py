"""SNN artifacts (``snn.pt`` from convert, ``private.pt`` from train): a layer graph plus settings.

The file is a plain dict of tensors, numbers and strings, so it loads with
``torch.load(weights_only=True)``; its manifest sits next to it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ArtifactError, PrivsnnError
from .graph import Graph
from .io_utils import torch_save
from .manifest import Manifest, read_manifest

SNN_FORMAT = "privsnn-snn/1"


@dataclass
class SNNArtifact:
    graph: Graph
    settings: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    manifest: Manifest | None = None

    @property
    def model(self) -> dict[str, Any]:
        return self.graph.meta.get("model", {})

    @property
    def timesteps(self) -> int:
        return int(self.settings.get("timesteps", self.graph.meta.get("timesteps", 32)))

    @property
    def private(self) -> bool:
        return bool(self.manifest.private) if self.manifest else bool(self.settings.get("private", True))


def save_snn(path: str | Path, graph: Graph, settings: dict[str, Any], manifest: Manifest) -> Path:
    """Write the artifact and its manifest atomically."""
    graph.validate()
    path = Path(path)
    torch_save(path, {"format": SNN_FORMAT, "graph": graph.to_dict(), "settings": settings})
    manifest.write_for(path)
    return path


def load_snn(path: str | Path) -> SNNArtifact:
    """Read an SNN artifact; a missing, truncated or foreign file raises ArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"SNN artifact not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ArtifactError(f"{path}: refused or unreadable ({str(e).splitlines()[0][:200]})") from None
    except Exception as e:  # torch.load raises many types on damaged files (IndexError on an empty one)
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ArtifactError(f"{path}: not a readable SNN artifact (empty, truncated or corrupt: {first})") from None
    if not isinstance(obj, dict) or obj.get("format") != SNN_FORMAT:
        raise ArtifactError(f"{path}: not a privsnn SNN artifact (expected format {SNN_FORMAT!r}); "
                            f"make one with `privsnn convert`")
    try:
        graph = Graph.from_dict(obj["graph"], str(path))
    except PrivsnnError as e:
        raise ArtifactError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path}: malformed layer graph ({e})") from None
    return SNNArtifact(graph=graph, settings=dict(obj.get("settings", {})), path=path, manifest=read_manifest(path))


def check_same_model(artifact: SNNArtifact, loaded, role: str = "--model") -> None:
    """Raise if ``loaded`` (a LoadedModel) is not the ANN the SNN was made from (by weights hash),
    or at least not the same architecture and head."""
    m = artifact.model
    if m.get("sha256") and loaded.sha256 == m.get("sha256"):
        return
    if m.get("arch") != loaded.arch or int(m.get("num_classes", -1)) != loaded.num_classes:
        raise PrivsnnError(f"{role} {loaded.spec} ({loaded.arch}, {loaded.num_classes} classes) does not match the "
                           f"SNN's architecture ({m.get('arch')}, {m.get('num_classes')} classes, from {m.get('spec')})")
