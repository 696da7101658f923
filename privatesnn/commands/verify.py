"""`privsnn verify`: check an artifact's hash and its provenance chain."""

from __future__ import annotations

import argparse

DESCRIPTION = """Check that an artifact matches the SHA-256 in its manifest, that every parent named in
the chain still has the recorded hash (where the file is still there), and report whether any real
data was read on the way (from the manifests).

  privsnn verify run/private.pt
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="an artifact file (synth.npz, snn.pt, private.pt, model.nir, ...) or export folder")
    p.add_argument("--json", default=None, metavar="PATH")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ArtifactError
    from ..io_utils import sha256_file
    from ..manifest import check_export_files, read_manifest
    from .common import emit

    path = Path(args.artifact)
    if not path.exists():
        raise ArtifactError(f"artifact not found: {path}")
    m = read_manifest(path)
    if m is None:
        raise ArtifactError(f"{path} has no manifest (expected {path.name}.manifest.json next to it)")
    problems: list[str] = []
    if path.is_file() and m.sha256 and sha256_file(path) != m.sha256:
        problems.append(f"{path}: content does not match the manifest's SHA-256 (modified after it was written)")
    if path.is_dir():
        problems += check_export_files(path, m)
    chain, real = [], m.real_data_read

    def walk(manifest: dict, depth: int) -> None:
        nonlocal real
        for parent in manifest.get("parents", []):
            pm = parent.get("manifest")
            p = parent.get("path")
            entry = {"role": parent.get("role"), "path": p or parent.get("spec"), "sha256": parent.get("sha256"),
                     "depth": depth}
            if p and parent.get("sha256") and Path(p).is_file() and sha256_file(p) != parent["sha256"]:
                problems.append(f"parent {parent.get('role')} {p} changed since it was used")
            chain.append(entry)
            if pm:
                entry["real_data_read"] = bool(pm.get("real_data_read"))
                real = real or entry["real_data_read"]
                walk(pm, depth + 1)

    walk(m.to_dict(), 1)
    print(f"{path}: {m.kind} made by `privsnn {m.command}`; hash {'OK' if not problems else 'PROBLEM'}")
    for e in chain:
        print(f"  {'  ' * (e['depth'] - 1)}<- {e['role']}: {e.get('path') or '(model)'}"
              + (f" (real data read: {e['real_data_read']})" if "real_data_read" in e else ""))
    print(f"real data read anywhere on the way: {real}; private: {m.private}")
    for pr in problems:
        print(f"problem: {pr}")
    if problems:  # a failed check writes no report: the error line says what is wrong
        raise ArtifactError("; ".join(problems))
    emit({"artifact": str(path), "ok": True, "problems": [], "real_data_read": real,
          "private": m.private, "chain": chain}, args.json)
    return 0
