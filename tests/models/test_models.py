import pytest
import torch

from ddkit.errors import DDKitError
from ddkit.models import MODELS, ModelSpec, build_model
from ddkit.models.checkpoint import save_weights


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_trains_one_step(name):
    model = build_model(ModelSpec(name), 10, (1, 28, 28), (0.3,), (0.35,), seed=0)
    x = torch.rand(4, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (4, 10) and model.features(x).shape[0] == 4
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_same_seed_same_init_other_seed_differs():
    a, b, c = (build_model(ModelSpec("convnet", {"width": 8}), 10, (1, 28, 28), (0.3,), (0.35,), seed=s) for s in (1, 1, 2))
    assert torch.equal(a.body.head.weight, b.body.head.weight)
    assert not torch.equal(a.body.head.weight, c.body.head.weight)


def test_convnet3_is_the_field_standard():
    model = build_model(ModelSpec("convnet"), 10, (1, 28, 28), (0.3,), (0.35,))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and all(n.num_groups == n.num_channels == 128 for n in norms)
    assert model.body.head.in_features == 128 * 3 * 3


def test_unknown_model_and_option_are_clear():
    with pytest.raises(DDKitError, match="unknown model 'vgg'; choose one of: convnet"):
        build_model(ModelSpec("vgg"), 10, (1, 28, 28), (0.3,), (0.35,))
    with pytest.raises(DDKitError, match="unknown option 'widht' for model 'convnet'; valid options: width, depth, norm"):
        build_model(ModelSpec("convnet", {"widht": 3}), 10, (1, 28, 28), (0.3,), (0.35,))
    with pytest.raises(DDKitError, match="unknown norm"):
        build_model(ModelSpec("convnet", {"norm": "layer"}), 10, (1, 28, 28), (0.3,), (0.35,))


@pytest.mark.parametrize("name, fmt", [("timm:test_resnet", "dir"), ("timm:test_efficientnet", "file"), ("torchvision:mobilenet_v3_small", "pth")])
def test_external_models_load_weights_saved_to_disk(name, fmt, tmp_path):
    """Users load pretrained timm/torchvision weights from disk; here from a tiny random model."""
    source = build_model(ModelSpec(name), 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, seed=1)
    if fmt == "dir":
        (tmp_path / "hub-snapshot").mkdir()
        save_weights(source.body, tmp_path / "hub-snapshot" / "model.safetensors")
        weights = tmp_path / "hub-snapshot"
    elif fmt == "file":
        weights = tmp_path / "weights.safetensors"
        save_weights(source.body, weights)
    else:
        weights = tmp_path / "weights.pth"
        torch.save({"state_dict": source.body.state_dict()}, weights)
    loaded = build_model(ModelSpec(name, weights=str(weights)), 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, seed=2)
    x = torch.rand(2, 3, 32, 32)
    source.eval(), loaded.eval()
    assert torch.allclose(source(x), loaded(x))
    assert torch.allclose(loaded(x[:, :1]), loaded(x[:, :1].expand(-1, 3, -1, -1)))  # grayscale input


def test_external_unknown_name_is_clear():
    with pytest.raises(DDKitError, match="unknown timm model 'no_such_net'"):
        build_model(ModelSpec("timm:no_such_net"), 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3)


def test_dc_stem_pads_grayscale_inputs_to_32_pixels():
    model = build_model(ModelSpec("convnet", {"dc_stem": True}), 10, (1, 28, 28), (0.3,), (0.35,))
    assert model.body.features[0].padding == (3, 3) and model.body.head.in_features == 128 * 4 * 4
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name, options", [("resnet-ap", {}), ("resnet-idc", {}), ("resnet-ap", {"depth": 18, "width": 16}),
                                           ("convnet", {"depth": 5})])
def test_idc_students_train_a_step_at_32_and_64_px(name, options, size):
    model = build_model(ModelSpec(name, options), 10, (3, size, size), (0.5,) * 3, (0.25,) * 3, seed=0)
    logits = model(torch.rand(2, 3, size, size))
    assert logits.shape == (2, 10)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(n.num_groups == n.num_channels for n in model.modules() if isinstance(n, torch.nn.GroupNorm))


def test_idc_stems_follow_the_resolution_as_the_reference():
    def stem(name, size):
        return [type(m).__name__ for m in build_model(ModelSpec(name), 10, (3, size, size), (0.5,) * 3, (0.25,) * 3).body.features[:4]]

    assert stem("resnet-ap", 224) == ["Conv2d", "GroupNorm", "ReLU", "AvgPool2d"]
    assert stem("resnet-idc", 224) == stem("resnet-idc", 128) == ["Conv2d", "GroupNorm", "ReLU", "MaxPool2d"]
    ap = build_model(ModelSpec("resnet-ap"), 10, (3, 224, 224), (0.5,) * 3, (0.25,) * 3)
    assert all(m.stride == (1, 1) for m in ap.modules() if isinstance(m, torch.nn.Conv2d))  # ResNetAP only pools
    resnet18 = build_model(ModelSpec("resnet-idc"), 10, (3, 224, 224), (0.5,) * 3, (0.25,) * 3)
    assert resnet18.body.features[0].kernel_size == (7, 7) and resnet18.body.features[0].stride == (2, 2)
    assert sum(p.numel() for p in resnet18.parameters()) == 11_181_642  # torchvision's ResNet-18 with 10 classes
    conv = resnet18.body.features[0]  # IDC's init: std sqrt(2 / fan-out) = sqrt(2 / (7·7·64)) ≈ 0.0253
    assert abs(conv.weight.std().item() - (2 / (7 * 7 * 64)) ** 0.5) < 0.002
