"""bench/accuracy.py: its bad options exit naming the option before any work starts."""

from __future__ import annotations

import pytest

from helpers import load_bench


@pytest.mark.parametrize("argv, message", [
    (["--digits-windowed-t", "-1"], "--digits-windowed-t"),
    (["--cifar-windowed-seeds", "4"], "--cifar-windowed-seeds"),
])
def test_bad_options_exit_naming_the_option(argv, message, monkeypatch):
    bench = load_bench("accuracy")
    monkeypatch.setattr("sys.argv", ["accuracy.py", "--cases", "digits", *argv])
    with pytest.raises(SystemExit, match=message):
        bench.main()
