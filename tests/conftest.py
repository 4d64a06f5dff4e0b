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


@pytest.fixture()
def sd_pipeline_dir(tmp_path):
    """A Stable-Diffusion-shaped pipeline (CLIP text encoder + tokenizer, cross-attention UNet, VAE),
    tiny and random, saved as a user would have it. The tokenizer's vocabulary is written here:
    single characters and a few words, enough for real BPE tokenisation offline."""
    import json

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(" ,.-/")
    vocab = {tok: i for i, tok in enumerate(["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=16)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                                norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=2)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=16)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                       scheduler=DDIMScheduler(num_train_timesteps=100), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(tmp_path / "sd")
    return tmp_path / "sd"


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


def save_tiny_dit(path, classes: int = 10, latent_size: int = 8, layers: int = 2):
    """A DiT + AutoencoderKL pipeline (the ImageNet prior's shape, tiny and random) saved as a user would have it."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=layers, sample_size=latent_size, patch_size=2, num_embeds_ada_norm=classes,
                                        norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=latent_size * 2)
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler(num_train_timesteps=100)).save_pretrained(path)
    return path


@pytest.fixture()
def dit_pipeline_dir(tmp_path):
    return save_tiny_dit(tmp_path / "dit")
