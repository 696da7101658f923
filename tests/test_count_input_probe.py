"""bench/count_input_probe.py: bad options exit naming the option before anything runs."""

from __future__ import annotations

import pytest

from helpers import load_bench


@pytest.mark.parametrize("argv, needle", [(["--levels", "6,x"], "--levels"), (["--levels", "0"], "--levels"),
                                          (["--epochs", "0"], "--epochs"),
                                          (["--synthetic", "no_such.npz"], "no synthetic set at no_such.npz")])
def test_bad_options_exit_naming_the_option(argv, needle, monkeypatch, capsys):
    bench = load_bench("count_input_probe")
    monkeypatch.setattr("sys.argv", ["count_input_probe.py", *argv, "--out", "never.json"])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    message = str(exc.value) + capsys.readouterr().err
    if needle.startswith("no synthetic") and "../shared/data is absent" in message:
        pytest.skip("the shared data is absent: the probe stops before it looks for the synthetic set")
    assert needle in message
