"""Hardware targets: energy models (constants with citations), and later Loihi / Lava mapping."""
