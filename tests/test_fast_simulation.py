"""The fast simulation paths: the streaming SNN (identical spikes to the layer-by-layer one), the
fast integer chip model (bit-exact with its readable specification), `simulate --engine reference`,
and the threading default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from privatesnn.cli import main
from privatesnn.conversion import ConversionSettings, convert
from privatesnn.hw_targets.chip_model import ChipModel
from privatesnn.native import load_kernel, private_folder
from privatesnn.neuron_kernel import fused_neurons_available, neuron_chunk
from privatesnn.hw_targets import fused_lif
from privatesnn.hw_targets.fused_lif import fused_lif_available, lif_step, lif_step_torch, per_neuron
from privatesnn.hw_targets.int8_conv import Int8Conv, int8_conv_exact
from privatesnn.hw_targets.loihi import build_plan, quantize_plan, reference_fixed_simple
from privatesnn.models import load_model
from privatesnn.models.registry import create_model
from privatesnn.snn import SpikingNetwork
from privatesnn.streaming import choose_chunk, run_streaming

from helpers import randomize_bn


def _registry_graph(name: str, tmp_path, timesteps: int = 8, encoding: str = "direct"):
    net = randomize_bn(create_model(name))
    path = tmp_path / f"{name}.pt"
    torch.save(net.state_dict(), path)
    loaded = load_model(f"{name}:{path}")
    images = torch.rand(16, *loaded.input_shape, generator=torch.Generator().manual_seed(0))
    return convert(loaded, images, ConversionSettings(timesteps=timesteps, encoding=encoding), progress=False), loaded


def _spikes_streaming(net, x, T, chunk):
    got: dict[str, list] = {}
    out = run_streaming(net, x, T, chunk, observer=lambda name, t0, s: got.setdefault(name, []).append(s.clone()))
    return out, {k: torch.cat(v) for k, v in got.items()}


@pytest.mark.parametrize("name, encoding", [("resnet20", "direct"), ("vgg11", "direct"), ("digits_cnn", "rate")])
def test_streaming_gives_identical_spikes(name, encoding, tmp_path):
    """Residual (diagonal shortcuts, in-place adds), max-pooling and rate-coded graphs: every spike
    of every layer equals the layer-by-layer simulation's, for chunks of 1, 3 and all steps."""
    graph, loaded = _registry_graph(name, tmp_path, encoding=encoding)
    net = SpikingNetwork(graph).eval()
    x = torch.rand(3, *loaded.input_shape, generator=torch.Generator().manual_seed(1))
    T = 7
    torch.manual_seed(3)
    ref_out, ref = net.run(x, T, return_spikes=True)
    total = sum(int(s.sum()) for s in ref.values())
    assert total > 0  # the comparison is not vacuous
    for chunk in (1, 3, T):
        torch.manual_seed(3)
        out, got = _spikes_streaming(net, x, T, chunk)
        assert set(got) == set(ref)
        for layer in ref:
            assert torch.equal(got[layer], ref[layer]), (chunk, layer)
        # the spikes are exact; the readout sums the same spikes in GEMMs of another batch shape, whose
        # rounding depends on the BLAS build (1e-4 on logits of ~100 with torch 2.3.1+cu121's CPU kernels)
        torch.testing.assert_close(out.expand_as(ref_out) if out.shape[0] == 1 else out, ref_out.expand_as(out),
                                   rtol=1e-5, atol=1e-4)


def test_logits_over_time_uses_the_streaming_path_and_matches_forward(tmp_path):
    graph, loaded = _registry_graph("resnet20", tmp_path)
    net = SpikingNetwork(graph).eval()
    x = torch.rand(4, *loaded.input_shape, generator=torch.Generator().manual_seed(2))
    over = net.logits_over_time(x, [2, 5])
    with torch.no_grad():
        for T in (2, 5):
            # mean vs cumsum order: float32 sums of logits of 100-400 (torch 2.14.1's CPU kernels: 1.8e-4 apart);
            # a wrong step count or readout is off by whole units
            torch.testing.assert_close(over[T], net(x, T), atol=5e-4, rtol=1e-5)


def test_choose_chunk():
    assert choose_chunk(25, 32) == 2 and choose_chunk(5, 32) == 10 and choose_chunk(1000, 32) == 1
    assert choose_chunk(5, 32, chunk_batch=256) == 32
    with pytest.raises(ValueError, match="chunk must be > 0"):
        run_streaming(SpikingNetwork(_tiny()), torch.rand(1, 1, 6, 6), 4, chunk=-1)


def _tiny():
    from helpers import tiny_graph

    return tiny_graph()


@pytest.mark.parametrize("fused", [False, True], ids=["torch-update", "fused-update"])
@pytest.mark.parametrize("int8", [False, True], ids=["float-conv", "int8-conv"])
@pytest.mark.parametrize("name, leak, reset", [("resnet20", 1.0, "subtract"), ("digits_cnn", 0.9, "zero")])
def test_fast_chip_model_is_bit_exact_with_its_specification(name, leak, reset, int8, fused, tmp_path):
    """Integer output sums and spike counts of the fast chip model equal the step-by-step int64
    specification (which tests/test_lava.py checks against Lava), for IF and leaky neurons, both resets,
    with its convolutions in float32 and on the CPU's int8 units, its neuron update in torch passes and
    in the fused C kernel."""
    if int8 and not int8_conv_exact():
        pytest.skip("this CPU / torch build has no exact oneDNN int8 convolution")
    if fused and not fused_lif_available():
        pytest.skip("no C compiler here to build the fused neuron update (the chip model keeps its torch passes)")
    graph, loaded = _registry_graph(name, tmp_path)
    for n in graph.neurons():
        n.leak, n.reset = leak, reset
    fixed = quantize_plan(build_plan(graph, 6))
    x = torch.rand(5, *loaded.input_shape, generator=torch.Generator().manual_seed(4))
    slow, slow_counts = reference_fixed_simple(fixed, x, return_spikes=True)
    model = ChipModel(fixed, int8=int8, fused=fused)
    assert any(t.int8 is not None for terms in model.terms.values() for t in terms) == int8
    assert bool(model.fused) == fused
    assert bool(model.folded) == int8  # the << 6 and the bias folded into the int8 convolutions
    fast, fast_counts = model.run(x, return_spikes=True)
    assert int(sum(c.sum() for c in slow_counts.values())) > 0
    assert torch.equal(slow, fast)
    assert all(torch.equal(slow_counts[k], fast_counts[k]) for k in slow_counts)


def test_int8_convolution_is_exact_or_refused():
    """The int8 spike convolution equals float64 for 8-bit mantissas (extremes included) times a power
    of two, strided and grouped; `PRIVSNN_CHIP_INT8=0` turns it off."""
    if not int8_conv_exact():
        pytest.skip("this CPU / torch build has no exact oneDNN int8 convolution")
    gen = torch.Generator().manual_seed(5)
    for stride, groups in ((1, 1), (2, 1), (1, 2)):
        mant = torch.randint(-128, 128, (8, 6 // groups, 3, 3), generator=gen)
        mant[0, 0] = -128
        s = (torch.rand(3, 6, 11, 11, generator=gen) < 0.5).to(torch.uint8)
        got = Int8Conv(mant, 2.0 ** 5, (stride, stride), (1, 1), groups)(s)
        want = torch.nn.functional.conv2d(s.double(), mant.double() * 32, None, stride, 1, 1, groups)
        assert got.dtype == torch.float32 and torch.equal(got.double(), want)
    int8_conv_exact.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PRIVSNN_CHIP_INT8", "0")
            assert int8_conv_exact() is False
    finally:
        int8_conv_exact.cache_clear()


needs_fused = pytest.mark.skipif(not fused_lif_available(), reason="no C compiler here to build the fused kernel")


@needs_fused
@pytest.mark.parametrize("real, decay", [(torch.float32, 0), (torch.float32, 4095), (torch.float64, 0),
                                         (torch.float64, 1000), (torch.float64, 4095)])
@pytest.mark.parametrize("inputs", ["current", "diagonal", "current+diagonal", "host-bias"])
@pytest.mark.parametrize("layout", ["channels-last", "dense-2d"])
def test_fused_neuron_update_equals_the_torch_passes(real, decay, inputs, layout):
    """The C kernel gives the torch passes' membranes, spikes (float32 and uint8) and per-image counts
    bit for bit: both float types, no / full / partial decay, both resets, each kind of input, images
    larger than one kernel tile, channels-last and flat layouts, membranes at the clamp."""
    gen = torch.Generator().manual_seed(decay + len(inputs))
    shape = (3, 16, 20, 20) if layout == "channels-last" else (4, 300)
    fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format

    def t(x):
        return x.contiguous(memory_format=fmt)

    v0 = t(torch.randint(-(1 << 23), 1 << 23, shape, generator=gen).to(real))
    v0[0, :3] = (1 << 23) - 1  # at the bound
    y = t(torch.randint(-(1 << 16), 1 << 16, shape, generator=gen).float()) if "current" in inputs else None
    ds = t((torch.rand(shape, generator=gen) < 0.4).float()) if "diagonal" in inputs else None
    dw = per_neuron(torch.randint(-4096, 4096, (shape[1],), generator=gen).float(), v0) if ds is not None else None
    bias = t(torch.randint(-(1 << 20), 1 << 20, (shape[0] if inputs == "host-bias" else 1, *shape[1:]),
                           generator=gen).to(real))
    for subtract in (True, False):
        results = []
        for step in (lif_step_torch, lif_step):
            v = v0.clone()
            s_f32, s_u8 = t(torch.full(shape, 7.0)), t(torch.full(shape, 7, dtype=torch.uint8))
            counts = torch.arange(shape[0], dtype=torch.int64)
            step(v, decay, y, ds, dw, 64.0 if inputs != "current" else 1.0, bias, float((1 << 23) - 1),
                 float(50 << 6), subtract, s_f32, s_u8, counts)
            results.append((v, s_f32, s_u8, counts))
        (v_t, f_t, u_t, c_t), (v_c, f_c, u_c, c_c) = results
        assert 0 < int(u_t.sum()) < u_t.numel()
        assert torch.equal(v_t, v_c) and torch.equal(f_t, f_c) and torch.equal(u_t, u_c) and torch.equal(c_t, c_c)


@needs_fused
def test_fused_neuron_update_refuses_mismatched_arrays():
    v = torch.zeros(2, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="y is"):
        lif_step(v, 0, torch.zeros(2, 4, 3, 3), None, None, 1.0, None, 100.0, 10.0, True)  # NCHW, not NHWC
    with pytest.raises(ValueError, match="counts must be int64"):
        lif_step(v, 0, None, None, None, 1.0, None, 100.0, 10.0, True, counts=torch.zeros(2))
    with pytest.raises(ValueError, match="needs both"):
        lif_step(v, 0, None, torch.zeros_like(v), None, 1.0, None, 100.0, 10.0, True)


def test_fused_kernel_is_loaded_only_from_a_private_folder(tmp_path):
    """A shared library is code: the kernel is built and loaded only in a folder of this user that
    nobody else can write to."""
    mine = tmp_path / "cache"
    assert private_folder(mine) and (mine.stat().st_mode & 0o777) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert not private_folder(shared)


def _forget_kernels() -> None:
    """Drop the loaded kernels and probe results, so the next use sees the environment anew."""
    for cached in (load_kernel, fused_lif._library, fused_lif_available):
        cached.cache_clear()


def test_fused_kernel_off_switch_and_no_compiler_fall_back_to_the_torch_passes(monkeypatch, tmp_path):
    """`PRIVSNN_FUSED=0` and a machine without a C compiler give the torch passes (same sums)."""
    graph, loaded = _registry_graph("digits_cnn", tmp_path)
    fixed = quantize_plan(build_plan(graph, 4))
    x = torch.rand(3, *loaded.input_shape, generator=torch.Generator().manual_seed(1))
    want = reference_fixed_simple(fixed, x)
    try:
        for env, value in (("PRIVSNN_FUSED", "0"), ("CC", str(tmp_path / "no-such-compiler"))):
            monkeypatch.setenv("PRIVSNN_CACHE_DIR", str(tmp_path / "cache"))
            monkeypatch.setenv(env, value)
            _forget_kernels()
            assert not fused_lif_available()
            model = ChipModel(fixed)
            assert model.fused == {} and model.kernels()["neuron_update"] == "torch passes"
            assert torch.equal(model.run(x), want)
            monkeypatch.delenv(env)
    finally:
        monkeypatch.undo()
        _forget_kernels()


@pytest.mark.skipif(not fused_neurons_available(), reason="no C compiler here to build the fused kernel")
@pytest.mark.parametrize("leak, reset", [(1.0, "subtract"), (0.9, "subtract"), (1.0, "zero"), (0.8, "zero")])
@pytest.mark.parametrize("layout, steps", [("channels-last", 4), ("channels-last", 1), ("flat", 4)])
def test_fused_float_neurons_equal_the_torch_passes(leak, reset, layout, steps):
    """The float SNN's fused neuron kernel gives the torch passes' spikes and membranes bit for bit (a
    threshold float32 cannot hold, constant and per-step currents, more neurons than one tile), and
    declines tensors it cannot run (the torch passes then run)."""
    from privatesnn.neurons import SpikingNeuron
    from privatesnn.streaming import _empty_steps, _neuron_chunk, _neuron_chunk_torch

    gen = torch.Generator().manual_seed(steps)
    cell = SpikingNeuron(0.4142, leak, reset)
    shape = (5, 16, 12, 12) if layout == "channels-last" else (7, 700)
    v0 = torch.rand(shape, generator=gen)
    if layout == "channels-last":
        v0 = v0.contiguous(memory_format=torch.channels_last)
    cur = _empty_steps(v0, steps).copy_(torch.randn((steps, *shape), generator=gen) * 0.3)
    a, b = v0.clone(), v0.clone()
    want = _neuron_chunk_torch(cell, cur, a, 4)
    out = _empty_steps(b, 4)
    assert neuron_chunk(cell, cur, b, 4, out)
    assert torch.equal(want, out) and torch.equal(a, b) and 0 < int(want.sum()) < want.numel()
    assert torch.equal(_neuron_chunk(cell, cur, v0.clone(), 4), want)
    if layout == "channels-last":  # currents in another layout than the membrane: declined
        assert not neuron_chunk(cell, cur.contiguous(), v0.clone(), 4, _empty_steps(v0, 4))


def test_simulate_reference_engine(tmp_path, capsys):
    """`simulate --engine reference` on digits: the chip model's accuracy and agreement, and the Lava
    cross-check (bit-exact where Lava is installed, a stated skip where it is not)."""
    from privatesnn.lava_extra import lava_available

    snn = tmp_path / "snn.pt"
    synth = tmp_path / "s.npz"
    assert main(["synthesize", "--model", "digits", "--num", "60", "--iterations", "20", "--out", str(synth)]) == 0
    assert main(["convert", "--model", "digits", "--synthetic", str(synth), "--timesteps", "8", "--out", str(snn)]) == 0
    assert main(["export", "--snn", str(snn), "--target", "lava", "--out", str(tmp_path / "lava")]) == 0
    out = tmp_path / "sim.json"
    rc = main(["simulate", "--artifact", str(tmp_path / "lava"), "--engine", "reference", "--data", "digits",
               "--limit", "30", "--check-lava", "3", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["engine"] == "reference" and r["n"] == 30 and r["tag"] == "reference"
    assert r["runs"][0]["convolutions"] == ("int8 (exact)" if int8_conv_exact() else "float32 (exact)")
    assert r["runs"][0]["neuron_update"].startswith("fused C kernel" if fused_lif_available() else "torch passes")
    assert r["agreement"] >= 0.9 and r["accuracy"] >= 0.8
    if lava_available():
        assert r["lava_cross_check"]["images"] == 3 and r["lava_cross_check"]["bit_exact"] is True
    else:
        assert "not installed" in r["lava_cross_check"]["skipped"]


def test_simulate_reference_bad_options(tmp_path, capsys):
    for flag, value, needle in (("--check-lava", "-1", "--check-lava must be >= 0"),
                                ("--batch-size", "0", "--batch-size must be > 0")):
        rc = main(["simulate", "--artifact", str(tmp_path), "--engine", "reference", "--data", "digits", flag, value])
        assert rc == 2 and needle in capsys.readouterr().err


def test_passive_openmp_wait_policy_is_the_default():
    """The package sets OMP_WAIT_POLICY=PASSIVE before torch loads (OpenMP threads sleep instead of
    spinning when the CPU is shared); a value the user set is kept."""
    code = "import os, privatesnn.cli; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env | {"OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "ACTIVE"


def test_privsnn_threads_overrides_and_is_checked(monkeypatch, capsys):
    from privatesnn import threads

    monkeypatch.setenv("PRIVSNN_THREADS", "1")
    assert threads.configure_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("PRIVSNN_THREADS", "two")
    assert main(["evaluate", "--model", "digits", "--data", "digits"]) == 2
    assert "PRIVSNN_THREADS must be an integer, got 'two'" in capsys.readouterr().err


def test_large_direct_batches_run_in_sub_batches_with_identical_logits(tmp_path):
    from privatesnn.streaming import SUB_BATCH

    graph, loaded = _registry_graph("resnet20", tmp_path)
    net = SpikingNetwork(graph).eval()
    x = torch.rand(SUB_BATCH + 7, *loaded.input_shape, generator=torch.Generator().manual_seed(6))
    whole = run_streaming(net, x, 5)
    over = net.logits_over_time(x, [5])[5]
    assert torch.equal(over, whole.cumsum(0)[4] / 5)
