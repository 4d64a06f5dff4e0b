import json

import pytest

from ddkit.data import DatasetConfig
from ddkit.errors import DDKitError
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set


def test_a_set_made_before_an_option_was_added_still_matches_while_the_option_stays_at_its_default(tiny, tmp_path):
    teachers, out = TeacherPool(tiny, tmp_path / "cache"), tmp_path / "set"
    make_set("random", {}, 1, 0, tiny, DatasetConfig(), teachers, out)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["meta"]["config"] == {"factor": 1}
    manifest["meta"]["config"] = {}  # as `random` wrote it before it had the factor option
    manifest_path.write_text(json.dumps(manifest))
    stamp = (out / "tensors.safetensors").stat().st_mtime_ns
    make_set("random", {}, 1, 0, tiny, DatasetConfig(), teachers, out)
    assert (out / "tensors.safetensors").stat().st_mtime_ns == stamp  # reused, not made again
    with pytest.raises(DDKitError, match="holds a set made with another config"):
        make_set("random", {"factor": 2}, 1, 0, tiny, DatasetConfig(), teachers, out)
