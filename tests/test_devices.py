import pytest
import torch

from ddkit.devices import device_label, module_device, resolve_device
from ddkit.errors import DDKitError


def test_resolve_device_names_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device_label(torch.device("cpu")) == "cpu"
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")


def test_unknown_device_is_a_one_line_error():
    with pytest.raises(DDKitError, match="unknown device 'tpu7'"):
        resolve_device("tpu7")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_missing_gpu_names_the_fix():
    with pytest.raises(DDKitError, match="--device cpu"):
        resolve_device("cuda")
