import shutil
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ddkit.curves import CurveLog, read_rows
from ddkit.data import formation
from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, synthesize
from ddkit.methods.inversion import (
    BatchNormMatch,
    Inversion,
    InversionConfig,
    PrismConfig,
    draw_panel,
    inversion_loss,
    item_iterations,
    work_items,
)
from ddkit.models import ModelSpec, build_model
from ddkit.models.teachers import Teacher, teacher_config

FAST = {"iterations": 4}
PANEL = {"bn_teachers": ["convnet-bn", "resnet", "mobilenet"]}


def run(tiny, loader, method="sre2l", ipc=2, workdir=None, **options):
    return synthesize(method, {**FAST, **options}, SynthesisContext(tiny, ipc, 0, loader, workdir=workdir))


def test_bn_loss_goes_down_with_one_and_with_three_teachers(tiny, tiny_teacher_loader):
    for options in ({}, {**PANEL, "bn_sampler": "fixed"}):
        short = run(tiny, tiny_teacher_loader, ipc=1, iterations=1, r_bn=1.0, **options).meta["items"][0]
        long = run(tiny, tiny_teacher_loader, ipc=1, iterations=30, r_bn=1.0, **options).meta["items"][0]
        assert long["final_bn"] < 0.7 * short["final_bn"], options
        assert long["bn_teachers"] == (PANEL["bn_teachers"] if options else ["convnet-bn"])


def test_inverted_images_are_valid_pixels_and_class_ordered(tiny, tiny_teacher_loader):
    result = run(tiny, tiny_teacher_loader, ipc=2)
    assert result.images.shape == (20, 1, 28, 28)
    assert result.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert 0 <= result.images.min() and result.images.max() <= 1


def test_sre2l_and_prism_presets_produce_different_sets(tiny, tiny_teacher_loader):
    sre2l = run(tiny, tiny_teacher_loader, "sre2l")
    prism = run(tiny, tiny_teacher_loader, "prism")
    assert not torch.allclose(sre2l.images, prism.images)
    assert prism.meta["items"][0]["real_init"] is not None and sre2l.meta["items"][0]["real_init"] is None
    # the released code's BN set: the logit teacher always, the others by coin flip
    assert all("convnet-bn" in item["bn_teachers"] for item in prism.meta["items"])


def test_prism_starts_each_ipc_index_from_its_own_real_image(tiny, tiny_teacher_loader):
    result = run(tiny, tiny_teacher_loader, "prism", ipc=3)
    starts = [i for item in result.meta["items"] for i in item["real_init"]]
    assert len(set(starts)) == 30
    assert all(int(tiny.train.labels[i]) == c for item in result.meta["items"] for c, i in enumerate(item["real_init"]))


@pytest.mark.parametrize(("init", "kernel"), [("herding", "linear"), ("kernel-herding", "rbf")])
def test_prism_from_a_herding_init_starts_at_the_herding_coreset(tiny, tiny_teacher_loader, init, kernel):
    ctx = SynthesisContext(tiny, ipc=3, seed=0, teacher=tiny_teacher_loader)
    herded = synthesize("herding", {"kernel": kernel}, ctx)
    started = synthesize("prism", {"iterations": 1, "lr": 1e-9, "schedule": "fixed", "init": init}, ctx)
    assert torch.allclose(started.images, herded.images, atol=1e-5)
    random_real = synthesize("prism", {"iterations": 1, "lr": 1e-9, "schedule": "fixed"}, ctx)
    assert not torch.allclose(random_real.images, herded.images, atol=1e-5)


def test_prism_from_a_set_starts_at_its_decoded_images_and_refuses_a_set_too_small(tiny, tiny_teacher_loader, tmp_path):
    ctx = SynthesisContext(tiny, ipc=1, seed=0, teacher=tiny_teacher_loader)
    tiled = synthesize("herding", {"factor": 2}, ctx)  # one stored image per class, four decoded
    tiled.save(tmp_path / "tiled")
    ctx.ipc = 4
    started = synthesize("prism", {"iterations": 1, "lr": 1e-9, "schedule": "fixed", "init": "set", "init_set": str(tmp_path / "tiled")}, ctx)
    assert torch.allclose(started.images, tiled.decoded().images, atol=1e-5)
    assert started.meta["init_set"] and started.meta["items"][0]["real_init"] is None
    ctx.ipc = 5
    with pytest.raises(DDKitError, match="holds 4 images of class 'T-shirt/top' and IPC 5 starts from 5; lower the IPC"):
        synthesize("prism", {"init": "set", "init_set": str(tmp_path / "tiled")}, ctx)
    with pytest.raises(DDKitError, match="is not a distilled set"):
        synthesize("prism", {"init": "set", "init_set": str(tmp_path)}, ctx)


def test_prism_at_factor_2_starts_from_encoded_starts_and_stores_tiles(tiny, tiny_teacher_loader, tmp_path):
    ctx = SynthesisContext(tiny, ipc=2, seed=0, teacher=tiny_teacher_loader)
    start = {"iterations": 1, "lr": 1e-9, "schedule": "fixed", "factor": 2}
    herded = synthesize("herding", {"kernel": "rbf", "factor": 2}, ctx)
    from_herding = synthesize("prism", {**start, "init": "kernel-herding"}, ctx)
    assert from_herding.factor == 2 and from_herding.images.shape == (20, 1, 28, 28)
    assert torch.allclose(from_herding.images, herded.images, atol=1e-5)
    real = synthesize("prism", start, ctx)
    picks = real.meta["items"][0]["real_init"]  # IPC index 0: four real images for each class in turn
    assert len(set(picks)) == 40 and [int(tiny.train.labels[i]) for i in picks] == [c for c in range(10) for _ in range(4)]
    assert torch.allclose(real.images[0::2], formation.encode(tiny.train.load(torch.tensor(picks)), 2), atol=1e-5)
    herded.save(tmp_path / "tiled")
    from_tiles = synthesize("prism", {**start, "init": "set", "init_set": str(tmp_path / "tiled")}, ctx)
    assert torch.allclose(from_tiles.images, herded.images, atol=1e-5)  # a set of the same factor: its stored images
    whole = synthesize("herding", {}, SynthesisContext(tiny, ipc=8, seed=0, teacher=tiny_teacher_loader))
    whole.save(tmp_path / "whole")
    from_whole = synthesize("prism", {**start, "init": "set", "init_set": str(tmp_path / "whole")}, ctx)
    first_four = whole.images[whole.labels == 0][:4]
    assert torch.allclose(from_whole.images[0], formation.encode(first_four, 2)[0], atol=1e-5)
    with pytest.raises(DDKitError, match="IPC 3 at formation factor 2 starts from 12"):
        synthesize("prism", {**start, "init": "set", "init_set": str(tmp_path / "whole")}, SynthesisContext(tiny, 3, 0, tiny_teacher_loader))


def test_prism_at_factor_2_inverts_the_decoded_tiles(tiny, tiny_teacher_loader):
    teacher = tiny_teacher_loader("convnet-bn").model.eval()

    def tile_loss(distilled):  # the logit teacher's cross-entropy on the decoded tiles, each labelled with its class
        tiles = distilled.decoded()
        with torch.no_grad():
            return float(F.cross_entropy(teacher(tiles.images), tiles.labels))

    short = run(tiny, tiny_teacher_loader, "prism", ipc=1, iterations=1, lr=0.1, factor=2, **PANEL)
    long = run(tiny, tiny_teacher_loader, "prism", ipc=1, iterations=40, lr=0.1, factor=2, **PANEL)
    assert tile_loss(long) < 0.75 * tile_loss(short)
    with pytest.raises(ValueError, match="factor must be positive"):
        PrismConfig(factor=0)


def test_a_changed_start_set_is_not_taken_for_the_finished_items_of_another(tiny, tiny_teacher_loader, tmp_path):
    options = {"iterations": 1, "lr": 1e-9, "schedule": "fixed", "init": "set", "init_set": str(tmp_path / "start")}
    ctx = SynthesisContext(tiny, ipc=1, seed=0, teacher=tiny_teacher_loader, workdir=tmp_path / "work")
    firsts = synthesize("herding", {}, ctx)
    firsts.save(tmp_path / "start")
    assert torch.allclose(synthesize("prism", options, ctx).images, firsts.images, atol=1e-5)
    shutil.rmtree(tmp_path / "start")
    seconds = synthesize("random", {}, ctx)
    seconds.save(tmp_path / "start")
    assert not torch.allclose(firsts.images, seconds.images)
    assert torch.allclose(synthesize("prism", options, ctx).images, seconds.images, atol=1e-5)


def test_starts_keep_each_ipc_index_on_its_own_image_and_a_set_start_names_its_set():
    with pytest.raises(ValueError, match="use real_pick=per-index"):
        PrismConfig(init="kernel-herding", real_pick="random")
    with pytest.raises(ValueError, match="init=set starts from the distilled set named by init_set"):
        PrismConfig(init="set")
    with pytest.raises(ValueError, match="only init=set reads it"):
        PrismConfig(init_set="sets/dm")


def test_samplers_draw_what_they_claim():
    cfg = InversionConfig(**PANEL, bn_draw=2)
    draws = [draw_panel(cfg, torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(len(d) == 2 and set(d) <= set(PANEL["bn_teachers"]) for d in draws)
    assert len({tuple(d) for d in draws}) > 1
    assert draw_panel(cfg, torch.Generator().manual_seed(3)) == draws[3]  # seeded
    assert draw_panel(InversionConfig(**PANEL), torch.Generator()) == PANEL["bn_teachers"]  # bn_draw 0: all


def test_bernoulli_draw_keeps_the_logit_teacher_and_flips_a_coin_for_each_other_member():
    cfg = PrismConfig()
    draws = [draw_panel(cfg, torch.Generator().manual_seed(s)) for s in range(400)]
    assert all(d[0] == "convnet-bn" and d == [t for t in cfg.bn_teachers if t in d] for d in draws)
    for other in ("resnet", "mobilenet"):
        share = sum(other in d for d in draws) / len(draws)
        assert 0.4 < share < 0.6, (other, share)
    assert {len(d) for d in draws} == {1, 2, 3}
    assert draw_panel(replace(cfg, bn_include_probability=0.0), torch.Generator()) == ["convnet-bn"]
    with pytest.raises(ValueError, match="logit_teacher_in_panel=true"):
        PrismConfig(logit_teacher_in_panel=False)
    old = PrismConfig(bn_sampler="intra", bn_draw=1, logit_teacher_in_panel=False)  # the earlier reading stays available
    assert all(draw_panel(old, torch.Generator().manual_seed(s))[0] in ("resnet", "mobilenet") for s in range(10))


def test_cyclic_schedule_is_the_released_codes():
    cfg = PrismConfig(schedule="cyclic", iterations=4000)
    assert [item_iterations(cfg, k, 50) for k in range(10)] == [4000, 3500, 3000, 2500, 2000, 1500, 1000, 500, 4000, 3500]
    with pytest.raises(ValueError, match="cyclic schedule"):
        PrismConfig(schedule="cyclic", iterations=3500)


def test_normalised_space_and_jitter_give_valid_pixels(tiny, tiny_teacher_loader):
    pixel = run(tiny, tiny_teacher_loader, ipc=1, iterations=3)
    normalised = run(tiny, tiny_teacher_loader, ipc=1, iterations=3, space="normalised", jitter=4, crop_min_area=0.08)
    assert 0 <= normalised.images.min() and normalised.images.max() <= 1
    assert not torch.allclose(pixel.images, normalised.images)
    # from a real image with lr 0, the normalised round trip returns the image itself
    same = run(tiny, tiny_teacher_loader, "prism", ipc=1, iterations=1, lr=1e-12, space="normalised")
    starts = torch.tensor([i for item in same.meta["items"] for i in item["real_init"]])
    assert torch.allclose(same.images, tiny.train.images[starts], atol=1e-5)


def test_sampler_modes_in_a_run(tiny, tiny_teacher_loader):
    common = {**PANEL, "bn_draw": 1, "classes_per_batch": 5}
    intra = run(tiny, tiny_teacher_loader, ipc=6, bn_sampler="intra", iterations=1, **common).meta["items"]
    per_index = {}
    for item in intra:
        per_index.setdefault(item["item"][:10], set()).add(tuple(item["bn_teachers"]))
    assert all(len(draws) == 1 for draws in per_index.values())  # one draw per IPC index ...
    assert len(set().union(*per_index.values())) > 1  # ... re-drawn across indices
    pre = run(tiny, tiny_teacher_loader, ipc=4, bn_sampler="pre", iterations=1, **common).meta["items"]
    assert len({tuple(item["bn_teachers"]) for item in pre}) == 1
    every = run(tiny, tiny_teacher_loader, ipc=1, bn_sampler="iteration", iterations=2, **common).meta["items"]
    assert every[0]["bn_teachers"] == "per-iteration"


def test_logit_teacher_that_is_also_a_bn_teacher_runs_once(tiny, tiny_teacher_loader):
    teacher = tiny_teacher_loader("convnet-bn")
    calls = []
    handle = teacher.model.register_forward_hook(lambda *_: calls.append(1))
    matcher = BatchNormMatch(teacher.model, 10.0, normalise=False)
    try:
        x = tiny.train.images[:10].clone().requires_grad_(True)
        ce, bn = inversion_loss(x, tiny.train.labels[:10], {"convnet-bn": teacher}, ["convnet-bn"], [1.0], {"convnet-bn": matcher})
    finally:
        matcher.remove()
        handle.remove()
    assert len(calls) == 1 and bn > 0 and ce > 0
    (ce + bn).backward()
    assert x.grad.abs().sum() > 0


def test_normalising_by_layer_count_divides_the_bn_term(tiny, tiny_teacher_loader):
    teacher = tiny_teacher_loader("resnet")
    x = tiny.train.images[:10]
    values = []
    for normalise in (False, True):
        matcher = BatchNormMatch(teacher.model, 10.0, normalise)
        try:
            values.append(inversion_loss(x, tiny.train.labels[:10], {"resnet": teacher}, ["resnet"], [1.0], {"resnet": matcher})[1])
        finally:
            matcher.remove()
    assert torch.isclose(values[1], values[0] / len(matcher.layers))


def test_work_items_and_schedules():
    cross = work_items(InversionConfig(classes_per_batch=4), ipc=2, num_classes=10)
    assert [(i.indices, i.classes) for i in cross][:3] == [((0,), (0, 1, 2, 3)), ((0,), (4, 5, 6, 7)), ((0,), (8, 9))]
    assert len(cross) == 6
    wise = work_items(InversionConfig(batching="class-wise", indices_per_batch=3), ipc=4, num_classes=2)
    assert [(i.indices, i.classes) for i in wise] == [((0, 1, 2), (0,)), ((3,), (0,)), ((0, 1, 2), (1,)), ((3,), (1,))]
    staggered = PrismConfig(iterations=100, min_iteration_fraction=0.5)
    assert [item_iterations(staggered, k, 5) for k in range(5)] == [100, 88, 75, 62, 50]
    assert item_iterations(InversionConfig(iterations=100), 4, 5) == 100


def test_interrupted_run_resumes_to_identical_images(tiny, tiny_teacher_loader, tmp_path, monkeypatch):
    whole = run(tiny, tiny_teacher_loader, "prism", ipc=3)
    original = Inversion._run_item
    calls = []

    def interrupt_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Inversion, "_run_item", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tiny_teacher_loader, "prism", ipc=3, workdir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    monkeypatch.setattr(Inversion, "_run_item", original)
    resumed = run(tiny, tiny_teacher_loader, "prism", ipc=3, workdir=tmp_path)
    assert torch.equal(whole.images, resumed.images)
    assert resumed.meta["items"] == whole.meta["items"]


def test_each_work_item_logs_its_losses(tiny, tiny_teacher_loader, tmp_path):
    ctx = SynthesisContext(tiny, 2, 0, tiny_teacher_loader, curves=CurveLog(tmp_path))
    synthesize("sre2l", {"iterations": 10, "r_bn": 0.05}, ctx)  # under 100 iterations: a row each (see log_interval)
    curves = sorted((tmp_path / "inversion").glob("*.csv"))
    assert [c.stem for c in curves] == ["item-i0000-c0000", "item-i0001-c0000"]
    rows = read_rows(curves[0])
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert all(r["total"] == pytest.approx(r["ce"] + 0.05 * r["bn"], rel=1e-4) for r in rows)
    assert rows[-1]["bn"] < rows[0]["bn"]


def test_another_config_does_not_reuse_finished_items(tiny, tiny_teacher_loader, tmp_path):
    first = run(tiny, tiny_teacher_loader, ipc=1, workdir=tmp_path)
    second = run(tiny, tiny_teacher_loader, ipc=1, workdir=tmp_path, lr=0.01)
    assert not torch.equal(first.images, second.images)


def test_non_finite_loss_stops_with_the_fix_and_writes_nothing(tiny, tiny_teacher_loader, tmp_path):
    with pytest.raises(DDKitError, match="inversion loss became inf at step 1 of batch item-i0000-c0000; lower the lr"):
        run(tiny, tiny_teacher_loader, ipc=1, workdir=tmp_path, r_bn=float("inf"))
    assert not list(tmp_path.glob("*"))


def _with_plain_teacher(loader, tiny):
    def load(name):
        if name != "plain":
            return loader(name)
        train = tiny.train
        model = build_model(ModelSpec("convnet"), 10, train.image_shape, train.mean, train.std).eval()
        return Teacher(teacher_config("convnet-bn"), model, {"key": "plain"})

    return load


def test_panel_errors(tiny, tiny_teacher_loader):
    with pytest.raises(DDKitError, match="teacher 'plain' has no BatchNorm layer and cannot be a BN teacher"):
        run(tiny, _with_plain_teacher(tiny_teacher_loader, tiny), bn_teachers=["plain"])
    with pytest.raises(DDKitError, match="no BN teacher left"):
        run(tiny, tiny_teacher_loader, logit_teacher_in_panel=False)
    with pytest.raises(DDKitError, match="bn_draw must be between 0 and the panel size 1"):
        run(tiny, tiny_teacher_loader, bn_draw=2)


def test_real_init_beyond_the_class_and_mismatched_image_size(tiny, tiny_teacher_loader):
    with pytest.raises(DDKitError, match="IPC 31 is not possible"):
        run(tiny, tiny_teacher_loader, "prism", ipc=31)
    padded = ImageSet(torch.nn.functional.pad(tiny.train.images, (2, 2, 2, 2)), tiny.train.labels, tiny.train.class_names,
                      tiny.train.mean, tiny.train.std)
    with pytest.raises(DDKitError, match=r"teacher 'convnet-bn' cannot take \(1, 32, 32\) images"):
        run(replace(tiny, train=padded), tiny_teacher_loader, ipc=1)


def test_imagenet_style_teachers_from_weight_files(tiny, tiny_teacher_loader, tmp_path):
    """The ImageNet path: torchvision/timm architectures named in the user's teacher files, weights
    loaded from disk (tiny random models here, exactly as a user loads downloaded ones)."""
    from ddkit.models.checkpoint import save_weights

    train = tiny.train
    files = {}
    for name, arch in {"logit": "torchvision:resnet18", "panel": "timm:mobilenetv3_small_050"}.items():
        model = build_model(ModelSpec(arch), 10, train.image_shape, train.mean, train.std, seed=1)
        save_weights(model.body, tmp_path / f"{name}.safetensors")
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(f"arch: {{name: '{arch}'}}\nweights: {tmp_path / f'{name}.safetensors'}\n")

    from ddkit.models.teachers import load_or_squeeze

    loader = lambda name: load_or_squeeze(teacher_config(name), tiny)  # noqa: E731
    result = run(tiny, loader, "prism", ipc=1, iterations=2, logit_teachers=[str(files["logit"])],
                 bn_teachers=[str(files["panel"])])
    assert result.images.shape == (10, 1, 28, 28)
    assert result.meta["items"][0]["bn_teachers"] in ([str(files["panel"])], [])  # a coin flip: the logit teacher is not in this panel


def test_batch_moments_match_var_mean():
    from ddkit.methods.inversion import batch_moments

    x = torch.randn(6, 5, 7, 7) * 3 + 2
    mean, var = batch_moments(x)
    expected_var, expected_mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, expected_mean, atol=1e-5) and torch.allclose(var, expected_var, atol=1e-4)
