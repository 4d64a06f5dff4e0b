"""Shared fixtures: a few hundred real Fashion-MNIST images, tiny teachers, a temp teacher cache."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
import torch

from ddkit.cli import main
from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.images import DataSplits, ImageSet
from ddkit.models.teachers import load_or_squeeze, teacher_config

TINY_TEACHER = {"train": {"epochs": 2, "batch_size": 64}}


def first_per_class(images: ImageSet, count: int) -> ImageSet:
    keep = torch.cat([images.indices_of(c)[:count] for c in range(images.num_classes)])
    return images.subset(keep.sort().values)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Nothing a test trains (teachers, priors) lands in the user's ~/.cache/ddkit."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DDKIT_CACHE", str(tmp_path_factory.mktemp("ddkit-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def fmnist() -> DataSplits:
    return load_dataset(DatasetConfig())


@pytest.fixture(scope="session")
def tiny(fmnist: DataSplits) -> DataSplits:
    """30 train, 10 val and 40 test real images per class."""
    return replace(
        fmnist,
        train=first_per_class(fmnist.train, 30),
        val=first_per_class(fmnist.val, 10),
        test=first_per_class(fmnist.test, 40),
    )


@pytest.fixture()
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_teacher_loader(tiny, tmp_path_factory):
    """Tiny 2-epoch teachers on the tiny split, trained once per session."""
    cache = tmp_path_factory.mktemp("teachers")
    loaded = {}

    def load(name: str):
        if name not in loaded:
            loaded[name] = load_or_squeeze(teacher_config(name, TINY_TEACHER), tiny, cache)
        return loaded[name]

    return load


class Cli:
    """The command line, run in-process as a user would type it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def __call__(self, *args) -> tuple[int, str]:
        """(exit code, stdout + stderr) of `ddkit ARGS`."""
        self.monkeypatch.setattr(sys, "argv", ["ddkit", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code
        out = self.capsys.readouterr()
        return code, out.out + out.err

    def ok(self, *args) -> str:
        """The output of `ddkit ARGS`, which must succeed."""
        code, text = self(*args)
        assert code == 0, text
        return text


@pytest.fixture()
def cli(monkeypatch, capsys) -> Cli:
    return Cli(monkeypatch, capsys)
