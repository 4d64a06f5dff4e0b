import re

import pytest

from ddkit.config import build
from ddkit.errors import DDKitError
from ddkit.models import ModelSpec, model_spec, parse_model_spec, split_top_level
from ddkit.pipeline import RunConfig


def test_students_with_options_parse_and_round_trip_their_labels():
    texts = split_top_level("convnet(depth=6,norm=instance), resnet-ap ,mlp(hidden=[16, 8]),torchvision:resnet18(weights=w.pt)")
    specs = [parse_model_spec(t) for t in texts]
    assert specs == [ModelSpec("convnet", {"depth": 6, "norm": "instance"}), ModelSpec("resnet-ap"),
                     ModelSpec("mlp", {"hidden": [16, 8]}), ModelSpec("torchvision:resnet18", {}, "w.pt")]
    assert [parse_model_spec(s.label()) for s in specs[:3]] == specs[:3]
    assert parse_model_spec("convnet(width=1e2)").options == {"width": 100}  # ddkit's scalars, as --key=value
    assert model_spec({"name": "resnet-idc", "options": {"depth": 18}}) == ModelSpec("resnet-idc", {"depth": 18})


@pytest.mark.parametrize("text, message", [
    ("convnet(depth=6", "student 'convnet(depth=6' must look like name or name(key=value,...)"),
    ("convnet(6)", "option '6' must look like key=value"),
    ("mlp(hidden=a: b: c)", "'a: b: c' is not a valid value"),
    ("convnet(dpth=6)", "unknown option 'dpth' for model 'convnet'; valid options: width, depth, norm"),
    ("vgg", "unknown model 'vgg'"),
])
def test_bad_students_are_one_line_errors(text, message):
    with pytest.raises(DDKitError, match=re.escape(message)):
        parse_model_spec(text)


def test_a_run_lists_students_as_text_or_mappings(tmp_path):
    config = build(RunConfig, {"students": ["convnet(depth=6)", {"name": "resnet-idc", "options": {"depth": 18}}],
                               "eval_presets": ["imagenet-soft"], "eval_teacher": "convnet-bn"})
    assert [model_spec(s) for s in config.students] == [ModelSpec("convnet", {"depth": 6}), ModelSpec("resnet-idc", {"depth": 18})]
    with pytest.raises(DDKitError, match="unknown option 'dpth'"):
        build(RunConfig, {"students": ["convnet(dpth=6)"]})
    with pytest.raises(DDKitError, match="a mapping needs 'name'"):
        build(RunConfig, {"students": [{"model": "convnet"}]})
    with pytest.raises(DDKitError, match="evaluation preset file .*nope.yaml does not exist"):
        build(RunConfig, {"eval_presets": [str(tmp_path / "nope.yaml")]})
