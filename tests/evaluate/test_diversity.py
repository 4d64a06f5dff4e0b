import torch

from ddkit.data.distilled import DistilledSet
from ddkit.evaluate.diversity import mean_pairwise_cosine, measure_diversity
from ddkit.methods import SynthesisContext, synthesize
from ddkit.report.leaderboard import collect_diversity, leaderboard_markdown


def test_mean_pairwise_cosine():
    assert abs(mean_pairwise_cosine(torch.ones(4, 3)) - 1) < 1e-9
    assert abs(mean_pairwise_cosine(torch.eye(3))) < 1e-9
    assert abs(mean_pairwise_cosine(torch.tensor([[1.0, 0], [1, 1], [0, 1]])) - (2 * 0.7071068 + 0) / 3) < 1e-6
    assert mean_pairwise_cosine(torch.ones(1, 3)) != mean_pairwise_cosine(torch.ones(1, 3))  # nan


def test_copies_are_less_diverse_than_real_images_and_records_are_reused(tiny, tiny_teacher_loader, tmp_path):
    distinct = synthesize("random", {}, SynthesisContext(tiny, 4, 0, tiny_teacher_loader))
    copies = DistilledSet(distinct.images[::4].repeat_interleave(4, 0), distinct.labels, distinct.class_names,
                          distinct.mean, distinct.std, meta={"method": "copies", "ipc": 4})
    extractor = {"convnet-bn": tiny_teacher_loader("convnet-bn")}
    (same,) = measure_diversity(copies, tmp_path / "copies", tiny.train, extractor)
    (real,) = measure_diversity(distinct, tmp_path / "real", tiny.train, extractor)
    assert abs(same["mean"] - 1) < 1e-6
    assert real["mean"] < same["mean"] and 0 < real["real_mean"] < 1
    assert len(real["per_class"]) == 10 and real["extractor"] == extractor["convnet-bn"].label
    record = tmp_path / "real" / "diversity" / "convnet-bn.json"
    stamp = record.stat().st_mtime_ns
    measure_diversity(distinct, tmp_path / "real", tiny.train, extractor)
    assert record.stat().st_mtime_ns == stamp
    distinct.save(tmp_path / "real-set")
    measure_diversity(distinct, tmp_path / "real-set", tiny.train, extractor)
    rows = collect_diversity(tmp_path / "real-set")
    assert rows[0]["method"] == "random" and "## Intra-class diversity" in leaderboard_markdown([], rows)
