"""The optional Lava stack: the ``privsnn[lava]`` extra (lava-nc 0.10, lava-dl 0.6).

Lava installs and imports only on Python 3.10 (and pins torch 2.3 / numpy < 2), so it is not part
of the core. Without it everything else still works, including ``export --target lava`` (NIR, the
netx HDF5 file written with h5py, the fixed-point plan, the resource mapping) and the bit-exact
integer chip model :func:`privatesnn.hw_targets.loihi.reference_fixed`. Running Lava processes
(``privsnn simulate``, :mod:`privatesnn.hw_targets.lava_sim`) and loading a netx file with lava-dl
need the extra; they fail with :class:`~privatesnn.errors.MissingExtraError` (one ``error:`` line,
exit code 2 on the command line).
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys

from .errors import MissingExtraError

#: the only Python that lava-nc 0.10 / lava-dl 0.6 install and import on
LAVA_PYTHON = (3, 10)
INSTALL_HINT = 'pip install "privsnn[lava]" on Python 3.10'


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def lava_missing(need_dl: bool = False) -> str | None:
    """Why Lava cannot be used in this environment (a phrase), or None when lava-nc (and lava-dl if
    ``need_dl``) are installed. Looks at the installed distributions only: imports nothing."""
    missing = [d for d in ("lava-nc", "lava-dl")[: 2 if need_dl else 1] if not _installed(d)]
    if not missing:
        return None
    why = f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"
    if sys.version_info[:2] != LAVA_PYTHON:
        why += f", and cannot be on this Python {platform.python_version()}"
    return why


def lava_available(need_dl: bool = False) -> bool:
    """True when lava-nc (and lava-dl if ``need_dl``) are installed."""
    return lava_missing(need_dl) is None


def require_lava(feature: str, need_dl: bool = False) -> None:
    """Raise :class:`MissingExtraError` naming ``feature``, the extra and the Python it needs, unless
    Lava is installed."""
    why = lava_missing(need_dl)
    if why is not None:
        raise MissingExtraError(f"{feature} needs Lava, the privsnn[lava] extra (lava-nc 0.10, lava-dl 0.6; "
                                f"Python 3.10 only: {INSTALL_HINT}); here {why}")


def import_error(feature: str, err: ImportError) -> MissingExtraError:
    """A :class:`MissingExtraError` for a Lava that is installed but does not import."""
    return MissingExtraError(f"{feature} needs Lava, the privsnn[lava] extra, which is installed but does not "
                             f"import on Python {platform.python_version()} ({type(err).__name__}: {err}); "
                             f"{INSTALL_HINT}")
