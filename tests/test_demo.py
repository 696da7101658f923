"""`privsnn demo --quick`: the whole pipeline on digits, as a new user runs it (every stage real),
ending in the HTML report, which is opened in headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from privatesnn.cli import main
from privatesnn.lava_extra import lava_available

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One quick demo run for the tests of this module: (output folder, printed text)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--quick", "--out", str(out)])
    assert rc == 0
    return out, buf.getvalue()


@pytest.mark.lava
@pytest.mark.slow
def test_demo_quick_runs_every_stage(demo):
    out, text = demo
    assert "encrypted SNN" in text and "bit-exact with the chip model" in text and "energy" in text
    for f in ("synth.npz", "snn.pt", "snn_cal.pt", "private.pt", "model.nir", "audit.json", "energy/energy.json",
              "chip_sim.json", "report.html"):
        assert (out / f).exists(), f
    enc = {r["timesteps"]: r["accuracy"] for r in json.loads((out / "eval_encrypted.json").read_text())["results"]}
    assert enc[4] >= 0.9  # the low-latency path: QCFS + encryption at T=4
    sim = json.loads((out / "chip_sim.json").read_text())  # the whole test split on the chip model
    assert sim["n"] == 450 and sim["engine"] == "reference" and sim["agreement"] >= 0.95
    assert sim["lava_cross_check"] == {**sim["lava_cross_check"], "images": 10, "bit_exact": True}
    assert f"open {out / 'report.html'}" in text


@pytest.mark.slow
def test_demo_records_no_absolute_paths(demo):
    """Results and manifests name files relative to the run folder, never by this machine's paths."""
    out, _ = demo
    for f in out.rglob("*.json"):
        text = f.read_text()
        assert str(out) not in text and str(out.resolve()) not in text, f


@pytest.mark.slow
def test_demo_quick_on_a_core_install(demo):
    """Without the privsnn[lava] extra the demo runs every stage (the chip model included) but the
    Lava cross-check, and says why."""
    if lava_available():
        pytest.skip("Lava is installed: test_demo_quick_runs_every_stage checks the demo with it")
    out, text = demo
    assert "encrypted SNN" in text and "Lava cross-check skipped" in text and "privsnn[lava]" in text
    for f in ("synth.npz", "private.pt", "model.nir", "energy/energy.json", "lava/network.net", "lava/fixed_point.json",
              "chip_sim.json", "report.html"):
        assert (out / f).exists(), f
    sim = json.loads((out / "chip_sim.json").read_text())
    assert sim["n"] == 450 and "not installed" in sim["lava_cross_check"]["skipped"]


def _chromium() -> str | None:
    for c in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(c):
            return shutil.which(c)
    return None


@pytest.mark.slow
def test_demo_report_in_headless_chromium(demo, tmp_path):
    """The demo's report.html in a real browser: every section is there, every image decodes, the
    Plotly figures render, the page logs no console errors, and a screenshot is saved
    (PRIVSNN_SCREENSHOT=path also copies it there, e.g. docs/images/report.png for the README)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the test extra: pip install -e .[test])")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine; `make install-browser` installs Debian's chromium (needs apt and root)")
    out, _ = demo
    page_path = out / "report.html"
    errors: list[str] = []
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: errors.append(f"network request: {r.url}")
                    if not r.url.startswith(("file:", "data:", "about:")) else None)
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            for section in ("summary", "accuracy", "energy", "privacy", "deployment", "provenance"):
                assert page.locator(f"section#{section} h2").count() == 1, section
                assert page.locator(f"section#{section} .missing").count() == 0, f"{section} has no data"
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            assert len(images) >= 5 and all(ok and w > 0 for ok, w in images), images  # inverted-image grids
            assert page.locator("section#accuracy .js-plotly-plot").count() == 1
            assert page.locator("section#energy .js-plotly-plot").count() >= 1
            assert page.locator("section#deployment .js-plotly-plot").count() == 1
            assert page.locator("section#energy").inner_text().count("ms") >= 1  # the on-chip delay
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert shot.stat().st_size > 10_000
    if os.environ.get("PRIVSNN_SCREENSHOT"):
        dest = Path(os.environ["PRIVSNN_SCREENSHOT"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest)
