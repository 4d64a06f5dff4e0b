"""Captions for training the embedded text prior on a labelled image set.

Fashion-MNIST has labels, not captions. Each training image gets words from a prompt
vocabulary's attribute axes (brightness, size, texture), measured on the image and split by
per-class tertiles, so every word is true of its image *relative to its class* and each word
marks a third of the class. A caption is drawn afresh per step: a random framing phrase ("a photo
of"), each true attribute word kept with probability `keep`, the WordNet gloss appended with
probability ½, and the empty caption (CFG's null) with probability `drop`. The prior thus learns
both the bare class prompt and the diversified prompts DPE builds from the same vocabulary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

from ddkit.prompts.builder import Vocabulary, caption

INK = 0.2  # pixels above this count as the object (the background is black)


def attribute_measures(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image: mean ink brightness, share of ink pixels, and edge energy inside the ink."""
    grey = images.mean(1)
    ink = (grey > INK).float()
    area = ink.flatten(1).sum(1).clamp_min(1)
    laplacian = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    edges = F.conv2d(grey.unsqueeze(1), laplacian, padding=1).abs().squeeze(1)
    return {"brightness": (grey * ink).flatten(1).sum(1) / area,
            "size": area / ink[0].numel(),
            "texture": (edges * ink).flatten(1).sum(1) / area}


def attribute_levels(chunks: Iterable[torch.Tensor], labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, axes) tertile 0/1/2 of each measure within the image's class; `chunks` are the images, batch by batch."""
    measured = [attribute_measures(chunk) for chunk in chunks]
    measures = {name: torch.cat([m[name] for m in measured]) for name in measured[0]}
    levels = torch.zeros(len(labels), len(measures), dtype=torch.long)
    for c in range(num_classes):
        rows = (labels == c).nonzero().flatten()
        for a, values in enumerate(measures.values()):
            cuts = torch.quantile(values[rows], torch.tensor([1 / 3, 2 / 3]))
            levels[rows, a] = torch.bucketize(values[rows], cuts)
    return levels


@dataclass
class CaptionTable:
    """Every caption the sampler can draw, encoded once; `index` picks rows per training step."""

    texts: list[str]
    levels: torch.Tensor  # (N, axes) attribute tertiles of each training image
    axes: int
    styles: int
    null_row: int

    @staticmethod
    def build(vocab: Vocabulary, attributes: dict[str, list[str]], class_names: Sequence[str], glosses: Sequence[Optional[str]],
              levels: torch.Tensor) -> "CaptionTable":
        words = list(attributes.values())
        texts = []
        for c, name in enumerate(class_names):
            for style in vocab.styles:
                for choice in itertools.product(range(4), repeat=len(words)):  # level 3: the word left out
                    chosen = [words[a][level] if level < 3 else "" for a, level in enumerate(choice)]
                    for gloss in (None, glosses[c]):
                        texts.append(caption(vocab, style, chosen, name, gloss))
        texts.append("")
        return CaptionTable(texts, levels, len(words), len(vocab.styles), len(texts) - 1)

    def index(self, rows: torch.Tensor, labels: torch.Tensor, keep: float, drop: float, generator: torch.Generator) -> torch.Tensor:
        """Row of the caption table for each image: random framing, kept words, gloss, or null."""
        n = len(rows)
        levels = self.levels[rows].clone()
        levels[torch.rand(levels.shape, generator=generator) >= keep] = 3
        style = torch.randint(0, self.styles, (n,), generator=generator)
        gloss = torch.randint(0, 2, (n,), generator=generator)
        combo = torch.zeros(n, dtype=torch.long)
        for a in range(self.axes):
            combo = combo * 4 + levels[:, a]
        index = ((labels * self.styles + style) * 4 ** self.axes + combo) * 2 + gloss
        index[torch.rand(n, generator=generator) < drop] = self.null_row
        return index
