import pickle

import pytest
import torch

from ddkit.errors import DDKitError
from ddkit.models import ModelSpec, build_model
from ddkit.models.checkpoint import load_weights, save_weights


def tiny_model(seed=0):
    return build_model(ModelSpec("convnet-bn", {"width": 4}), 10, (1, 28, 28), (0.3,), (0.35,), seed=seed)


def test_safetensors_round_trip(tmp_path):
    source, target = tiny_model(0), tiny_model(1)
    save_weights(source, tmp_path / "w.safetensors")
    load_weights(target, tmp_path / "w.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_corrupt_safetensors_is_one_line_error(tmp_path):
    save_weights(tiny_model(), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DDKitError, match="is corrupt") as err:
        load_weights(tiny_model(), tmp_path / "w.safetensors")
    assert "\n" not in str(err.value)


class Payload:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"weights": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(DDKitError, match="not a weights-only file"):
        load_weights(tiny_model(), tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2]) + b"junk")
    with pytest.raises(DDKitError, match="corrupt or not a weights-only"):
        load_weights(tiny_model(), tmp_path / "junk.pt")


def test_shape_mismatch_names_the_key(tmp_path):
    save_weights(build_model(ModelSpec("convnet-bn", {"width": 4}), 5, (1, 28, 28), (0.3,), (0.35,)), tmp_path / "w.safetensors")
    with pytest.raises(DDKitError, match="body.head.weight has shape"):
        load_weights(tiny_model(), tmp_path / "w.safetensors")
