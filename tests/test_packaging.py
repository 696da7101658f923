"""Packaging: one import namespace (the repo's exporters/ and hw_targets/ folders install as
privatesnn.exporters and privatesnn.hw_targets, nothing else at top level) and Lava as an extra."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"privatesnn": "privatesnn", "exporters": "privatesnn.exporters", "hw_targets": "privatesnn.hw_targets"}
OLD_IMPORT = re.compile(r"^\s*(from|import)\s+(exporters|hw_targets)\b|__import__\(\s*[\"'](exporters|hw_targets)\b",
                        re.MULTILINE)
OLD_DOTTED = re.compile(r"(?<![\w./-])(exporters|hw_targets)\.[a-z_]+\b(?!\.json|\.py)")


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_package_list_names_every_package_folder():
    st = _pyproject()["tool"]["setuptools"]
    assert st["package-dir"] == {"privatesnn": "privatesnn", "privatesnn.exporters": "exporters",
                                 "privatesnn.hw_targets": "hw_targets"}
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert set(st["packages"]) == found
    assert st["package-data"]["privatesnn.hw_targets"] == ["*.json", "*.c"]


def test_lava_is_an_extra_for_python_310_only():
    project = _pyproject()["project"]
    assert not any(d.startswith(("lava", "torch==", "numpy<")) or "<2" in d for d in project["dependencies"])
    lava = project["optional-dependencies"]["lava"]
    assert {d.split(";")[0].strip() for d in lava} >= {"lava-nc==0.10.0", "lava-dl==0.6.0"}
    assert all(d.split(";")[1].strip() == "python_version < '3.11'" for d in lava)


def test_no_code_or_doc_uses_the_old_top_level_names():
    files = [p for d in ("privatesnn", "exporters", "hw_targets", "tests", "bench", "scripts", "docs")
             for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".md", ".sh")] + [ROOT / "README.md"]
    bad = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for pattern in (OLD_IMPORT, OLD_DOTTED):
            bad += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for m in pattern.finditer(text)]
    assert not bad, bad


def test_installed_modules_live_under_privatesnn(tmp_path):
    import privatesnn.exporters.netx
    import privatesnn.hw_targets.loihi
    from privatesnn.hw_targets.energy_models import DEFAULT_PATH

    assert DEFAULT_PATH.is_file()
    assert Path(privatesnn.exporters.netx.__file__).parent.name == "exporters"
    # from outside the checkout, no top-level exporters / hw_targets comes from this project
    code = ("import importlib.util as u, json; "
            "print(json.dumps({n: (u.find_spec(n).origin if u.find_spec(n) else None) "
            "for n in ('exporters', 'hw_targets', 'privatesnn.exporters', 'privatesnn.hw_targets')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    spec = json.loads(out.strip().splitlines()[-1])
    assert spec["privatesnn.exporters"] and spec["privatesnn.hw_targets"]
    for name in ("exporters", "hw_targets"):
        assert spec[name] is None or not Path(spec[name]).resolve().is_relative_to(ROOT), (name, spec[name])


@pytest.mark.slow
def test_wheel_installs_one_namespace(tmp_path):
    """The wheel (built offline from a copy of the sources) holds privatesnn/ only, with the
    exporters and hw_targets modules (and the energy constants) inside it."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment (make install puts it there)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, text=True)
    wheel, = (tmp_path / "dist").glob("privsnn-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names} == {"privatesnn", wheel.name.split("-py")[0] + ".dist-info"}
    for f in ("privatesnn/exporters/netx.py", "privatesnn/exporters/nir_export.py", "privatesnn/hw_targets/loihi.py",
              "privatesnn/hw_targets/lava_sim.py", "privatesnn/hw_targets/energy_models.json",
              "privatesnn/hw_targets/fused_lif.c", "privatesnn/neuron_kernel.c",
              "privatesnn/data/digits_cnn.pt", "privatesnn/lava_extra.py"):
        assert f in names, f
    requires = [ln.split(":", 1)[1].strip() for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    lava = [r for r in requires if r.startswith("lava-")]
    assert len(lava) == 2 and all('extra == "lava"' in r and 'python_version < "3.11"' in r for r in lava), lava
