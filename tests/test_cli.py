"""The CLI end to end on real Fashion-MNIST (a small slice), and its one-line errors."""

import json
import re

import pytest

LOG_LINE = re.compile(r"\d\d:\d\d:\d\d ")  # outside a terminal, progress and log lines start with the time


@pytest.mark.e2e
def test_run_preset_end_to_end_then_resume(tmp_path, cli):
    config = tmp_path / "small.yaml"
    config.write_text(
        "dataset: {name: fashion-mnist, train_per_class: 40}\n"
        "methods: [random, sre2l]\nmethod_options: {sre2l: {iterations: 5}}\nipcs: [1, 2]\n"
        "eval_presets: [hard-dsa-quick, soft-kd-quick]\ndiversity_extractors: [mlp]\n"
    )
    out, cache = tmp_path / "run", tmp_path / "cache"
    printed = cli.ok("run", str(config), "--out", str(out), "--cache", str(cache))
    board = json.loads((out / "report" / "leaderboard.json").read_text())
    assert len(board["rows"]) == 2 * 2 * 2 and all(len(r["accuracies"]) == 3 for r in board["rows"])
    assert {(d["method"], d["ipc"]) for d in board["diversity"]} == {(m, i) for m in ("random", "sre2l") for i in (1, 2)}
    assert "## Intra-class diversity" in (out / "report" / "leaderboard.md").read_text()
    assert not list((out / "sets").glob("*.partial"))
    assert all(0 <= r["mean"] <= 100 for r in board["rows"]) and "QUICK" in printed
    assert (out / "report" / "accuracy-soft-kd-quick.png").exists()
    assert (out / "sets" / "random-ipc2" / "images" / "0009_Ankle_boot" / "00001.png").exists()
    assert len(list((out / "sets" / "sre2l-ipc2" / "curves" / "inversion").glob("item-*.csv"))) == 2
    assert len(list((out / "sets" / "random-ipc1" / "eval" / "soft-kd-quick").glob("*/curves/seed-*.csv"))) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and manifest["environment"]["torch"]
    # An interrupted run resumes: remove one seed's result and the report, run again.
    victim = next((out / "sets" / "random-ipc1" / "eval").glob("hard-dsa-quick/*/seed-1.json"))
    expected = json.loads(victim.read_text())["test_accuracy"]
    victim.unlink()
    cli.ok("run", str(config), "--out", str(out), "--cache", str(cache))
    assert json.loads(victim.read_text())["test_accuracy"] == expected
    assert json.loads((out / "report" / "leaderboard.json").read_text())["rows"] == board["rows"]
    # The same directory with another config is refused.
    code, text = cli("run", str(config), "--out", str(out), "--cache", str(cache), "--seed=1")
    assert code == 2 and "different config (differs at 'seed')" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["synthesize", "kip", "--ipc", "1", "--out", "{tmp}/s"],
         "unknown method 'kip'; choose one of: dap, dc, diffusion, dm, herding, idm, kcenter, manifoldgd, mgd3, prism, prism-dfkd, "
         "random, rded, sre2l, text-diffusion"),
        (["synthesize", "random", "--ipc", "6000", "--out", "{tmp}/s"], "IPC 6000 is not possible: the smallest class has 5500"),
        (["synthesize", "herding", "--ipc", "1", "--out", "{tmp}/s", "--teachr=x"],
         "unknown key 'herding.teachr'; valid keys: bandwidth, factor, kernel"),
        (["synthesize", "random", "--ipc", "1", "--out", "{tmp}/s", "--data-root", "{tmp}/none"],
         "does not exist; install them with 'apt-get install dataset-fashion-mnist'"),
        (["synthesize", "random", "--ipc", "1", "--out", "{tmp}/s", "--dataset.val_size=lots"], "dataset.val_size must be an integer, got 'lots'"),
        (["run", "nope"], "unknown runs preset 'nope'; choose one of: dap-imagenet100,"),
        (["run", "demo", "--ipcs=[1, x]"], "ipcs[1] must be an integer, got 'x'"),
        (["run", "demo", "--methods=[random, kip]"], "unknown method 'kip'"),
        (["evaluate", "{tmp}", "--preset", "hard-dsa"], "is not a distilled set (no manifest.json)"),
        (["squeeze", "vit"], "unknown teacher 'vit'; choose one of: convnet-bn, convnet-in, mlp, mobilenet, resnet, "
                             "tv-alexnet,"),
        (["squeeze", "convnet-bn", "--weights={tmp}/w.safetensors"], "checkpoint {tmp}/w.safetensors is corrupt"),
        (["list", "things"], "cannot list 'things'"),
        (["squeeze-prior", "big"],
         "unknown prior recipe 'big'; choose one of: fashion-mnist-text-unet, fashion-mnist-unet, test-text-unet, test-unet"),
        (["synthesize", "dap", "--ipc", "1", "--out", "{tmp}/s", "--prior={tmp}"], "cannot load a diffusion prior from {tmp}"),
        (["synthesize", "dap", "--ipc", "1", "--out", "{tmp}/s", "--prior=test-unet", "--dataset.train_per_class=20",
          "--feature_layer=nope"], "feature layer 'nope' is not in UNet2DModel; choose one of:"),
    ],
)
def test_user_errors_are_one_line(args, message, tmp_path, cli):
    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    code, text = cli(*[a.format(tmp=tmp_path) for a in args])
    text = "\n".join(line for line in text.splitlines() if not LOG_LINE.match(line))  # progress and log lines before it
    assert code == 2, text
    assert message.format(tmp=tmp_path) in " ".join(text.split()), text
    assert "Traceback" not in text and text.strip().count("\n") == 0, text


def test_version(cli):
    from ddkit import __version__

    assert cli.ok("--version") == f"ddkit {__version__}\n"  # and main returns: exit 0


def test_list_methods_shows_every_option_with_type_default_and_help(monkeypatch, cli):
    monkeypatch.setenv("COLUMNS", "400")  # one line per table row, but for a method's "needs:" line
    lines = cli.ok("list", "methods").splitlines()
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.count("│") == 6]
    options, method = {}, None
    for row in cells:
        if row[1]:  # a method's name is on its first row (its extras below, in the name column alone)
            method = row[0] or method
            options[method, row[1]] = row[2:]
    assert options["dap", "sampler.steps"] == ["int", "50", "denoising steps"]
    assert options["sre2l", "logit_teachers"][1] == "[convnet-bn]"  # a list default is not eaten as rich markup
    assert options["text-diffusion", "prompts.style"][:2] == ["bool", "false"]
    assert options["random", "factor"][:2] == ["int", "1"]
    assert ["needs: diffusion", "", "", "", ""] in cells and ["needs: diffusion, text", "", "", "", ""] in cells


def test_list_presets_includes_the_prompt_vocabularies(monkeypatch, cli):
    monkeypatch.setenv("COLUMNS", "400")
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in cli.ok("list", "presets").splitlines()]
    assert ["prompts", "fashion-mnist, generic", "--prompts.vocabulary=NAME (prism-dfkd, text-diffusion)"] in rows


def test_synthesize_refuses_an_output_of_another_config(tmp_path, cli):
    args = ["synthesize", "random", "--ipc", "1", "--out", str(tmp_path / "s"), "--dataset.train_per_class=5"]
    cli.ok(*args)
    cli.ok(*args)  # same config: reused
    code, text = cli(*args[:3], "2", *args[4:])
    assert code == 2 and "holds a set made with another ipc" in text


def test_synthesize_evaluate_cross_architecture_and_report(tmp_path, cli):
    out = tmp_path / "set"
    cli.ok("synthesize", "random", "--ipc", "1", "--out", str(out), "--dataset.train_per_class=5")
    printed = cli.ok("evaluate", str(out), "--students", "convnet,mlp")  # no --preset: the quick one
    assert "convnet" in printed and "mlp" in printed and "QUICK" in printed
    assert ("no --preset given: hard-dsa-quick gives QUICK numbers (20 epochs, 2,000 test images), for checking the "
            "pipeline, not for comparing methods; pass --preset hard-dsa for the full protocol") in " ".join(printed.split())
    summaries = sorted(p.parent.name for p in (out / "eval" / "hard-dsa-quick").glob("*/summary.json"))
    assert summaries == ["convnet", "mlp"]
    cli.ok("report", str(out))
    assert (out / "report" / "leaderboard.md").read_text().count("| hard-dsa-quick (QUICK) |") == 2
    assert (out / "report" / "grid-set.png").exists()


def test_guided_diffusion_from_the_command_line(tmp_path, cli):
    """squeeze-prior, then a DAP set with the paper's shared references and the manifold projection, then its fidelity."""
    common = ["--dataset.train_per_class=20", "--cache", str(tmp_path / "cache")]
    printed = cli.ok("squeeze-prior", "test-unet", *common, "--device", "cpu")
    assert "prior test-unet-" in printed and "agreement" in printed
    out = tmp_path / "dap"
    cli.ok("synthesize", "dap", "--ipc", "2", "--out", str(out), *common, "--prior=test-unet",
           "--sampler.steps=3", "--project=true", "--neighbours=12", "--neighbours_final=6", "--tangent_dims=2",
           "--kernel_references=class")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["meta"]["method"] == "dap" and manifest["meta"]["config"]["project"] is True
    assert manifest["meta"]["config"]["kernel_references"] == "class"
    assert (out / "images" / "0009_Ankle_boot" / "00001.png").exists()
    guidance = sorted(p.name for p in (out / "curves" / "guidance").glob("*.csv"))  # moved in with the set
    assert len(guidance) == 10 and guidance[0] == "c0000-i00000-00001.csv" and not out.with_name("dap.partial").exists()
    printed = cli.ok("evaluate", str(out), "--preset", "hard-dsa-quick", "--fidelity", "mlp",
                     "--cache", str(tmp_path / "cache"), "--dataset.train_per_class=20")
    assert "fidelity" in printed and (out / "fidelity" / "mlp.json").exists()


def test_evaluate_with_a_preset_file_and_students_with_options(tmp_path, cli):
    out = tmp_path / "set"
    cli.ok("synthesize", "random", "--ipc", "1", "--out", str(out), "--dataset.train_per_class=5")
    preset = tmp_path / "tiny-hard.yaml"
    preset.write_text("description: one epoch\nstudent: {name: mlp}\n"
                      "train: {epochs: 1, batch_size: 8, augmentation: none, mix: cutmix}\nseeds: [0]\ntest_subset: 200\n")
    printed = cli.ok("evaluate", str(out), "--preset", str(preset), "--students", "convnet(width=8,depth=2),mlp(hidden=[16, 8])")
    assert "convnet(depth=2,width=8)" in printed and "mlp(hidden=[16, 8])" in printed
    folders = sorted(p.parent.name for p in (out / "eval" / "tiny-hard").glob("*/summary.json"))
    assert folders == ["convnet_depth=2_width=8_", "mlp_hidden=_16_8_"]
    code, text = cli("evaluate", str(out), "--preset", str(preset), "--students", "convnet(dpth=2)")
    assert code == 2 and "unknown option 'dpth' for model 'convnet'" in text and "Traceback" not in text
