"""One module per ``privsnn`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""
