"""Error types that the CLI turns into one line on stderr and exit code 2."""


class PrivsnnError(Exception):
    """Bad input from the user: a file, spec, layer or value that is not what was expected.

    The CLI prints ``error: <message>`` and exits with code 2 (no traceback).
    """


class UnsupportedLayerError(PrivsnnError):
    """A network contains a layer or operator that a stage cannot handle."""


class CheckpointError(PrivsnnError):
    """A checkpoint file is missing, truncated, unsafe, or does not fit the architecture."""


class DataError(PrivsnnError):
    """A data spec is malformed or names files that are missing or invalid."""


class ArtifactError(PrivsnnError):
    """A privsnn artifact (synthetic set, SNN, export) is missing, truncated or from elsewhere."""


class TrainingDivergedError(PrivsnnError):
    """Training produced NaN/Inf; the last good checkpoint is kept."""


class MissingExtraError(PrivsnnError, ImportError):
    """A feature needs an optional dependency that is not installed (e.g. Lava: ``privsnn[lava]``).

    Also an :class:`ImportError`, so importing a module that needs the extra fails the usual way.
    """
