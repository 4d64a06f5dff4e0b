"""DPE — diversified prompt engineering (PRISM-DFKD, He et al. 2025, arXiv 2509.16897), offline.

Three axes, each a switch: (1) *disambiguation* appends the WordNet gloss of the class's sense in
the vocabulary's domains ("sneaker, a canvas shoe with a pliable rubber sole", not the person who
sneaks); (2) *content* varies what is shown (attributes, viewpoint, scene, size); (3) *style*
varies the rendering ("a sketch of", "a low-light photo of"). The paper asks an LLM for these;
here they come from a curated vocabulary (`presets/prompts/<name>.yaml`), optionally extended by
phrases from a local causal language model. With every axis off a class gets the bare prompt
"a photo of a <name>", the plain-prior baseline.

Prompts are deterministic given the seed and are saved with the distilled set.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import yaml

from ddkit.config import load_yaml, parse_yaml
from ddkit.errors import DDKitError
from ddkit.extras import require
from ddkit.presets import preset_names, preset_path
from ddkit.prompts.wordnet import WordNet, disambiguate
from ddkit.seeds import item_seed


@dataclass(frozen=True)
class Vocabulary:
    name: str
    names: dict[str, str]  # dataset class name → the name used in prompts
    domains: list[str]  # WordNet hypernym lemmas that decide a name's sense
    styles: list[str]
    content: list[str]  # each holds "{name}"

    def display_name(self, class_name: str) -> str:
        return self.names.get(class_name, class_name.split("/")[0].strip().lower())


def load_vocabulary(name: str) -> Vocabulary:
    if name not in preset_names("prompts"):
        raise DDKitError(f"unknown prompt vocabulary {name!r}; choose one of: {', '.join(preset_names('prompts'))}")
    data = load_yaml(preset_path("prompts", name))
    content = data.get("content") or attribute_content(data.get("attributes", {}))
    vocab = Vocabulary(name, dict(data.get("names", {})), list(data.get("domains", [])), list(data["styles"]), list(content))
    for what, items in (("styles", vocab.styles), ("content", vocab.content)):
        if not items or len(set(items)) != len(items):
            raise DDKitError(f"prompt vocabulary {name}: {what} must be a non-empty list without duplicates")
    if any("{name}" not in c for c in vocab.content):
        raise DDKitError(f"prompt vocabulary {name}: every content entry must contain {{name}}")
    return vocab


def attribute_content(attributes: dict[str, list[str]]) -> list[str]:
    """Content entries from attribute axes: every combination of at most one word per axis."""
    axes = [[w for w in words] for words in attributes.values()]
    combos = {" ".join(w for w in combo if w) for combo in itertools.product(*axes)}
    return sorted(f"{words} {{name}}".strip() for words in combos)


def caption(vocab: Vocabulary, style: str, words: Sequence[str], class_name: str, gloss: Optional[str]) -> str:
    """'a photo of a dark large pullover, a sweater that …': the one shape shared by prompts and captions."""
    content = " ".join([w for w in words if w] + ["{name}"])
    return _render(style, content, vocab.display_name(class_name), gloss)


def _render(style: str, content: str, name: str, gloss: Optional[str]) -> str:
    shown = content.format(name=name)
    text = f"{style} {'an' if shown[:1].lower() in 'aeiou' else 'a'} {shown}"
    return f"{text}, {gloss}" if gloss else text


@dataclass(frozen=True)
class PromptOptions:
    vocabulary: str = "generic"  # prompt vocabulary (ddkit list presets: prompts); "" in a method: the dataset's own, else generic
    disambiguate: bool = True  # add the WordNet gloss of the class's sense in the vocabulary's domains
    content: bool = True  # vary what is shown (attributes, viewpoint, scene) from the vocabulary's content list
    style: bool = True  # vary the style (photo, sketch, close-up ...) from the vocabulary's styles
    per_class: int = 16  # distinct prompts per class; a class's images cycle through them
    file: str = ""  # YAML/JSON {class name: [prompts]}: used as given instead of the builder
    language_model: str = ""  # a local transformers causal-LM directory: adds generated content phrases
    generated: int = 4  # phrases generated per class by the language model


@dataclass
class PromptSet:
    prompts: list[list[str]]  # per class
    glosses: list[Optional[str]] = field(default_factory=list)

    def prompt(self, label: int, index: int) -> str:
        options = self.prompts[label]
        return options[index % len(options)]

    def to_json(self, class_names: Sequence[str]) -> dict:
        return {"classes": {name: {"prompts": p, "gloss": g} for name, p, g in
                            zip(class_names, self.prompts, self.glosses or [None] * len(self.prompts))}}


def glosses_for(vocab: Vocabulary, class_names: Sequence[str], wordnet: Optional[WordNet] = None) -> list[Optional[str]]:
    wordnet = wordnet or WordNet()
    senses = [disambiguate(wordnet, name, vocab.domains) for name in class_names]
    return [sense.gloss if sense else None for sense in senses]


def display_names(vocab: Vocabulary, class_names: Sequence[str]) -> list[str]:
    """Prompt names; a WordNet-offset class (ImageNet's n02012849) is named by its synset."""
    offsets = [name not in vocab.names and re.fullmatch(r"n\d{8}", name) for name in class_names]
    wordnet = WordNet() if any(offsets) else None  # read once: its index is large and ImageNet has 1,000 classes
    return [wordnet.synset(int(name[1:])).name if offset else vocab.display_name(name) for name, offset in zip(class_names, offsets)]


def class_prompts(vocab: Vocabulary, class_names: Sequence[str]) -> list[str]:
    """The bare prompt per class: the plain-prior baseline and the prior's quality check."""
    return [_render(vocab.styles[0], "{name}", name, None) for name in display_names(vocab, class_names)]


def build_prompts(options: PromptOptions, class_names: Sequence[str], seed: int) -> PromptSet:
    if options.file:
        return read_prompt_file(Path(options.file), class_names)
    vocab = load_vocabulary(options.vocabulary)
    glosses = glosses_for(vocab, class_names) if options.disambiguate else [None] * len(class_names)
    styles = vocab.styles if options.style else vocab.styles[:1]
    prompts = []
    for label, name in enumerate(display_names(vocab, class_names)):
        content = vocab.content if options.content else ["{name}"]
        if options.content and options.language_model:
            content = content + generated_content(options.language_model, name, options.generated, item_seed(seed, "prompt-lm", label))
        candidates = [(s, c) for s in styles for c in content]
        random.Random(item_seed(seed, "prompts", label)).shuffle(candidates)
        chosen = candidates[: max(1, options.per_class)]
        prompts.append([_render(s, c, name, glosses[label]) for s, c in chosen])
    return PromptSet(prompts, glosses)


def read_prompt_file(path: Path, class_names: Sequence[str]) -> PromptSet:
    try:
        data = parse_yaml(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise DDKitError(f"cannot read prompt file {path} ({str(err).splitlines()[0][:120]}); give YAML or JSON "
                         "mapping each class name to a list of prompts") from None
    if not isinstance(data, dict):
        raise DDKitError(f"prompt file {path} must map each class name to a list of prompts")
    missing = [name for name in class_names if name not in data]
    extra = [name for name in data if name not in class_names]
    if missing or extra:
        raise DDKitError(f"prompt file {path} must name exactly the {len(class_names)} classes of the teacher and dataset; "
                         f"missing {missing[:5]}, unknown {extra[:5]}")
    prompts = []
    for name in class_names:
        items = [str(p).strip() for p in (data[name] or [])]
        if not items or not all(items):
            raise DDKitError(f"prompt file {path}: class {name!r} has an empty prompt set or an empty prompt")
        if len(set(items)) != len(items):
            duplicate = next(p for p in items if items.count(p) > 1)
            raise DDKitError(f"prompt file {path}: class {name!r} repeats the prompt {duplicate!r}; give each prompt once")
        prompts.append(items)
    return PromptSet(prompts, [None] * len(class_names))


def generated_content(model_dir: str, name: str, count: int, seed: int) -> list[str]:
    """Content phrases from a local causal language model, the paper's LLM step ("{name}, <phrase>")."""
    import torch

    transformers = require("transformers", "language_model (generated prompt content)")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    except (OSError, ValueError) as err:
        raise DDKitError(f"cannot load the language model {model_dir} ({str(err).splitlines()[0][:120]}); "
                         "give a transformers causal-LM directory or leave language_model empty") from None
    torch.manual_seed(seed)
    query = tokenizer(f"A short description of a photo of a {name}:", return_tensors="pt")
    phrases = []
    for _ in range(count):
        with torch.no_grad():
            out = model.generate(**query, do_sample=True, max_new_tokens=12, pad_token_id=tokenizer.eos_token_id or 0)
        text = tokenizer.decode(out[0, query["input_ids"].shape[1]:], skip_special_tokens=True)
        phrase = " ".join(text.replace("{", "").replace("}", "").split())
        if phrase:
            phrases.append(f"{{name}}, {phrase}")
    return list(dict.fromkeys(phrases))
