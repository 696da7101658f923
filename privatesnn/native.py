"""Build and load privsnn's small C kernels (the fused neuron updates) on first use.

Why hand-written C at all: the simulators' neuron updates are 3-8 element-wise passes over every
membrane per layer and timestep when written in torch, and memory-bound; one fused pass is 2-8x
faster. No library offers these updates as one kernel, ``torch.compile`` (Inductor, torch 2.3)
emitted a scalar loop slower than the eager passes, and numba was slower too (README, "Simulation
speed"). Each kernel does the same float operations in the same order as the torch code it
replaces, so results are identical; every user probes its kernel against the torch code once per
process before using it.

How: the system C compiler (``$CC``, else ``cc``) with ``-O3 -march=native -ffp-contract=off
-fno-trapping-math`` into a per-user cache (``$PRIVSNN_CACHE_DIR``, else ``~/.cache/privsnn``; a
private folder in the temp directory where that is not usable), keyed by the source, the flags, the
compiler and the CPU, loaded with ctypes only from a folder that this user owns and nobody else can
write to. Without a compiler, or with ``PRIVSNN_FUSED=0``, :func:`load_kernel` returns None and the
callers keep their torch code.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

# -ffp-contract=off: no multiply-add is fused differently from torch's kernels (same rounding);
# -fno-trapping-math: lets the compiler if-convert and vectorise the compares and selects (results
# are unchanged; it only assumes floating-point exceptions do not trap).
FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno", "-fPIC", "-shared"]


def dense(t) -> bool:
    """Whether ``t`` fills its memory without gaps, as NCHW or channels-last (what a kernel can walk)."""
    import torch

    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def same_order(a, b) -> bool:
    """Same shape and, over the dimensions longer than 1, the same strides: the elements of ``a`` and
    ``b`` lie in memory in the same order."""
    return a.shape == b.shape and all(x == y for x, y, n in zip(a.stride(), b.stride(), a.shape) if n > 1)


def fused_kernels_enabled() -> bool:
    """False when ``PRIVSNN_FUSED`` turns the C kernels off (0 / false / no / off)."""
    return os.environ.get("PRIVSNN_FUSED", "1").strip().lower() not in ("0", "false", "no", "off")


def _cpu_key() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _cache_dirs() -> list[Path]:
    """Where a built kernel may live: the user's cache, then a private folder in the temp directory."""
    env = os.environ.get("PRIVSNN_CACHE_DIR")
    home = Path(os.path.expanduser("~"))
    user = os.getuid() if hasattr(os, "getuid") else os.getpid()
    first = [Path(env)] if env else [home / ".cache" / "privsnn"] if home.is_absolute() else []
    return first + [Path(tempfile.gettempdir()) / f"privsnn-{user}"]


def private_folder(folder: Path) -> bool:
    """Create ``folder`` (mode 0700) if needed; True if it belongs to this user and nobody else can
    write to it (a shared library loaded from a folder others can write would run their code)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    return st.st_uid == uid and not st.st_mode & 0o022


def _compile(source: Path, out: Path) -> bool:
    """Build the shared library ``out`` from ``source`` (atomically: a temp file, then a rename)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return False
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        for arch in (["-march=native"], []):  # some compilers/CPUs have no -march=native
            try:
                res = subprocess.run([cc, *FLAGS, *arch, "-o", tmp, str(source), "-lm"], capture_output=True,
                                     timeout=120)
            except subprocess.TimeoutExpired:
                return False
            if res.returncode == 0:
                os.replace(tmp, out)
                return True
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=None)
def load_kernel(source: Path) -> ctypes.CDLL | None:
    """The C file ``source`` built and loaded (cached per process), or None where it cannot be
    built or the kernels are turned off. The caller sets the functions' ctypes signatures."""
    if not fused_kernels_enabled():
        return None
    source = Path(source)
    key = hashlib.sha256(source.read_bytes() + " ".join(FLAGS).encode() + _cpu_key().encode()
                         + os.environ.get("CC", "cc").encode()).hexdigest()[:16]
    for folder in _cache_dirs():
        path = folder / f"{source.stem}-{key}.so"
        try:
            if not private_folder(folder):
                continue
            if not path.exists() and not _compile(source, path):
                return None
            return ctypes.CDLL(str(path))
        except OSError:
            continue  # an unusable cache folder or an unloadable file: try the next folder
    return None

