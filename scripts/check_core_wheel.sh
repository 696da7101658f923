#!/usr/bin/env bash
# The core wheel on a current stack, next to PyPI's `exporters`, against the Python 3.10 + Lava stack.
#
#   scripts/check_core_wheel.sh [OUT_DIR]        (default runs/core_wheel)
#
# 1. builds the wheel from a copy of the sources and checks it installs one namespace (privatesnn/);
# 2. makes a fresh venv of PYTHON_NEW (default: Python 3.12 on PATH or in pyenv), installs
#    exporters==0.7.0 and then the wheel (the core: current torch and numpy, no Lava);
# 3. runs the digits pipeline (synthesize, convert, train, evaluate, energy, export --target nir,
#    export --target lava, simulate) there and with REF_VENV (default .venv, `make install`:
#    Python 3.10, torch 2.3.1, Lava), and evaluates each stack's encrypted SNN on the other stack;
# 4. writes OUT_DIR/compare.json (and prints it; copied to bench/results/core_wheel.json): both
#    stacks' results, their differences (also from the same inputs: the reference stack's synthetic
#    images and converted SNN), and seconds per stage.
# Sizes are small (200 synthetic images, 1 epoch); about 10 minutes on 2 shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(realpath -m "${1:-runs/core_wheel}")
REF_VENV=$(realpath -m "${REF_VENV:-.venv}")
PYTHON_NEW=${PYTHON_NEW:-$(for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do
    "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo "$c"; break; }; done)}
[ -n "$PYTHON_NEW" ] || { echo "error: no Python 3.12 found; pass PYTHON_NEW=/path/to/python3.x" >&2; exit 2; }
[ -x "$REF_VENV/bin/privsnn" ] || { echo "error: $REF_VENV/bin/privsnn missing; run make install (or pass REF_VENV)" >&2; exit 2; }
export PRIVSNN_THREADS=${PRIVSNN_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
rm -rf "$OUT"; mkdir -p "$OUT"

echo "== building the wheel"
mkdir "$OUT/src"
cp -r pyproject.toml README.md privatesnn exporters hw_targets "$OUT/src/"
find "$OUT/src" -name __pycache__ -prune -exec rm -rf {} +
"$REF_VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/dist" "$OUT/src"
WHEEL=$(ls "$OUT"/dist/privsnn-*.whl)
"$REF_VENV/bin/python" - "$WHEEL" "$OUT/wheel.json" <<'EOF'
import json, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
top = sorted({n.split("/")[0] for n in names})
need = ["privatesnn/exporters/netx.py", "privatesnn/exporters/nir_export.py", "privatesnn/exporters/nir_import.py",
        "privatesnn/exporters/onnx_export.py", "privatesnn/hw_targets/loihi.py", "privatesnn/hw_targets/lava_sim.py",
        "privatesnn/hw_targets/energy_models.py", "privatesnn/hw_targets/energy_models.json"]
res = {"wheel": sys.argv[1].rsplit("/", 1)[-1], "top_level": top, "files": len(names),
       "exporters_files": sorted(n for n in names if n.startswith("privatesnn/exporters/")),
       "hw_targets_files": sorted(n for n in names if n.startswith("privatesnn/hw_targets/")),
       "missing": [n for n in need if n not in names]}
json.dump(res, open(sys.argv[2], "w"), indent=1)
print(json.dumps(res, indent=1))
assert not res["missing"] and [t for t in top if not t.endswith(".dist-info")] == ["privatesnn"], res
EOF

echo "== fresh venv: $("$PYTHON_NEW" --version), exporters==0.7.0, then the wheel"
"$PYTHON_NEW" -m venv "$OUT/venv-new"
NEW="$OUT/venv-new/bin"
"$NEW/python" -m pip install -q --upgrade "pip<25"
t0=$SECONDS
"$NEW/python" -m pip install -q exporters==0.7.0
"$NEW/python" -m pip install -q "$WHEEL"
echo "install seconds: $((SECONDS - t0))"
(cd "$OUT" && "$NEW/python" - "$OUT/install.json" <<'EOF'
import importlib.metadata as md, importlib.util as u, json, sys
import privatesnn.exporters.netx, privatesnn.hw_targets.loihi  # noqa: F401
files = {d: {str(f).split("/")[0] for f in (md.files(d) or []) if not str(f).startswith(("..", "__pycache__"))}
         for d in ("privsnn", "exporters")}
res = {"python": sys.version.split()[0], "versions": {d: md.version(d) for d in
                                                      ("privsnn", "exporters", "torch", "numpy", "norse", "nir", "onnx")},
       "top_level": {d: sorted(v) for d, v in files.items()},
       "shared_top_level": sorted(files["privsnn"] & files["exporters"] - {f for f in files["privsnn"] if f.endswith(".dist-info")}),
       "exporters_origin": u.find_spec("exporters").origin,
       "privatesnn.exporters_origin": u.find_spec("privatesnn.exporters").origin,
       "lava_installed": u.find_spec("lava") is not None}
json.dump(res, open(sys.argv[1], "w"), indent=1)
print(json.dumps(res, indent=1))
assert not res["shared_top_level"] and "site-packages/exporters/" in res["exporters_origin"], res
EOF
)

# The digits pipeline with one stack's privsnn, in OUT/NAME; seconds per stage in OUT/NAME/times.tsv.
pipeline() {
    local name=$1 bin=$2 d="$OUT/$1"
    mkdir -p "$d"
    stage() {
        local s=$1; shift
        local t0=$SECONDS
        (cd "$d" && "$bin/privsnn" "$@") >"$d/$s.log" 2>&1 || { echo "error: $name $s failed:"; tail -5 "$d/$s.log"; return 1; }
        printf '%s\t%s\n' "$s" "$((SECONDS - t0))" >>"$d/times.tsv"
    }
    echo "== pipeline on $name ($("$bin/python" --version))"
    stage synthesize synthesize --model digits --num 200 --batch-size 100 --out synth.npz
    stage convert convert --model digits --synthetic synth.npz --timesteps 16 --out snn.pt
    stage train train --snn snn.pt --teacher digits --synthetic synth.npz --epochs 1 --timesteps 8 --out private.pt
    stage evaluate_ann evaluate --model digits --data digits --json ann.json
    stage evaluate_snn evaluate --snn snn.pt --data digits --timesteps 8,16 --json eval_snn.json
    stage evaluate_private evaluate --snn private.pt --data digits --timesteps 8,16 --json eval_private.json
    stage energy energy --snn private.pt --model digits --data digits --timesteps 8 --out energy
    stage export_nir export --snn private.pt --target nir --out model.nir --json export_nir.json
    stage export_lava export --snn private.pt --target lava --out lava --json export_lava.json
    local t0=$SECONDS
    set +e
    (cd "$d" && "$bin/privsnn" simulate --artifact lava --data digits --limit 50 --json sim.json) >"$d/simulate.log" 2>&1
    echo $? >"$d/simulate.rc"
    set -e
    printf 'simulate\t%s\n' "$((SECONDS - t0))" >>"$d/times.tsv"
}
pipeline new "$NEW"
pipeline ref "$REF_VENV/bin"
echo "== the new stack from the reference stack's inputs: convert its synth.npz, train its snn.pt"
same() { (cd "$OUT/new" && "$NEW/privsnn" "$@") >>"$OUT/new/same_inputs.log" 2>&1; }
same convert --model digits --synthetic ../ref/synth.npz --timesteps 16 --out same_snn.pt
same train --snn ../ref/snn.pt --teacher digits --synthetic ../ref/synth.npz --epochs 1 --timesteps 8 --out same_private.pt
same evaluate --snn same_private.pt --data digits --timesteps 8,16 --json same_eval_private.json
echo "== each stack evaluates the other's encrypted SNN"
(cd "$OUT" && "$NEW/privsnn" evaluate --snn ref/private.pt --data digits --timesteps 8,16 --json new/cross_eval.json >/dev/null)
(cd "$OUT" && "$REF_VENV/bin/privsnn" evaluate --snn new/private.pt --data digits --timesteps 8,16 --json ref/cross_eval.json >/dev/null)

"$REF_VENV/bin/python" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

import h5py
import numpy as np

out = Path(sys.argv[1])


def acc(path: Path) -> dict:
    js = json.loads(path.read_text())
    if "results" in js:
        return {f"T={r['timesteps']}": r["accuracy"] for r in js["results"]}
    return {"ann": js["accuracy"]}


def stack(name: str) -> dict:
    d = out / name
    e = json.loads((d / "energy" / "energy.json").read_text())
    sim_log = (d / "simulate.log").read_text().strip().splitlines()
    return {"ann": acc(d / "ann.json"), "converted": acc(d / "eval_snn.json"), "encrypted": acc(d / "eval_private.json"),
            "other_stacks_encrypted_evaluated_here": acc(d / "cross_eval.json"),
            "energy_ratio": {k: v["ratio"] for k, v in e.get("conventions", {}).items() if isinstance(v, dict) and "ratio" in v},
            "energy_accuracy": e.get("accuracy"),
            "netx": json.loads((d / "export_lava.json").read_text())["netx"],
            "simulate": {"exit_code": int((d / "simulate.rc").read_text()),
                         "last_line": sim_log[-1] if sim_log else ""},
            "seconds": {ln.split("\t")[0]: int(ln.split("\t")[1]) for ln in (d / "times.tsv").read_text().splitlines()}}


def nir_params(path: Path) -> dict:
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: arrays.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) and v.dtype.kind in "fiu" else None)
    return arrays


def maxdiff(a: dict, b: dict) -> float:
    ks = sorted(set(a) & set(b))
    return max([float(np.max(np.abs(np.asarray(a[k], float) - np.asarray(b[k], float)))) if np.shape(a[k]) == np.shape(b[k])
                else float("inf") for k in ks] or [0.0])


def tensors(path: Path) -> dict:
    """Every floating-point parameter of an SNN artifact's graph (weights, thresholds, scales...), by its
    place in the nested structure (the training history's timings are left out)."""
    import torch

    flat = {}

    def walk(obj, key):
        if torch.is_tensor(obj):
            if obj.is_floating_point():
                flat[key] = obj.double().numpy()
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{key}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{key}/{i}")
        elif isinstance(obj, float):
            flat[key] = np.array(obj)

    walk(torch.load(path, weights_only=True)["graph"], "graph")
    return flat


new, ref = stack("new"), stack("ref")
za, zb = np.load(out / "new" / "synth.npz"), np.load(out / "ref" / "synth.npz")
na, nb = nir_params(out / "new" / "model.nir"), nir_params(out / "ref" / "model.nir")
diff = {"synthetic_images_max_abs": float(np.abs(za["images"].astype(float) - zb["images"].astype(float)).max()),
        "synthetic_labels_equal": bool(np.array_equal(za["labels"], zb["labels"])),
        "nir_same_datasets": sorted(na) == sorted(nb),
        "nir_params_max_abs": maxdiff(na, nb),
        "same_inputs": {
            "converted_snn_params_max_abs": maxdiff(tensors(out / "new" / "same_snn.pt"), tensors(out / "ref" / "snn.pt")),
            "trained_snn_params_max_abs": maxdiff(tensors(out / "new" / "same_private.pt"), tensors(out / "ref" / "private.pt")),
            "encrypted_accuracy_new": acc(out / "new" / "same_eval_private.json"),
            "encrypted_accuracy_ref": ref["encrypted"]},
        "accuracy_points": {grp: {k: round(100 * (new[grp][k] - ref[grp][k]), 3) for k in new[grp]}
                            for grp in ("ann", "converted", "encrypted", "other_stacks_encrypted_evaluated_here")}}
res = {"install": json.loads((out / "install.json").read_text()), "wheel": json.loads((out / "wheel.json").read_text()),
       "new": new, "ref": ref, "new_minus_ref": diff}
(out / "compare.json").write_text(json.dumps(res, indent=1))
print(json.dumps({k: res[k] for k in ("new", "ref", "new_minus_ref")}, indent=1))
EOF
cp "$OUT/compare.json" "$ROOT/bench/results/core_wheel.json"
echo "wrote $OUT/compare.json (copied to bench/results/core_wheel.json)"
