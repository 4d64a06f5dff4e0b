"""A reader of the WordNet 3.0 noun database as Debian's `wordnet-base` ships it
(/usr/share/wordnet/{index,data}.noun, format in wndb(5WN)), for sense disambiguation.

Only what disambiguation needs: the senses of a lemma in frequency order, each sense's gloss and
lemmas, and its hypernym closure. Inflected nouns ("dresses", "geese") find their lemma by
WordNet's own morphology (morphy(7WN)): the exception list noun.exc, then the detachment rules.
ImageNet class folders are WordNet noun offsets (n01440764), so their sense needs no guessing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ddkit.errors import DDKitError

DEFAULT_ROOT = Path("/usr/share/wordnet")
HYPERNYM_POINTERS = ("@", "@i")
# morphy(7WN)'s noun detachment rules, in its order: suffix → replacement.
NOUN_SUFFIXES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y"))


@dataclass(frozen=True)
class Synset:
    offset: int
    lemmas: tuple[str, ...]
    gloss: str  # the definition, without the usage examples
    hypernyms: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.lemmas[0].replace("_", " ")


class WordNet:
    def __init__(self, root: Optional[Path] = None) -> None:
        self.root = Path(root or os.environ.get("DDKIT_WORDNET", DEFAULT_ROOT))
        if not (self.root / "index.noun").is_file() or not (self.root / "data.noun").is_file():
            raise DDKitError(f"WordNet is missing from {self.root}: install it with 'apt-get install wordnet-base' "
                             "(or set DDKIT_WORDNET to a folder holding index.noun and data.noun), or turn disambiguation off")
        self._index = _read_index(self.root / "index.noun")
        self._exceptions = _read_exceptions(self.root / "noun.exc")
        self._synsets: dict[int, Synset] = {}

    def senses(self, word: str) -> list[Synset]:
        """The noun senses of `word`, most frequent first; an inflected form falls back to its lemma."""
        lemma = self.lemma(word)
        return [self.synset(offset) for offset in self._index[lemma]] if lemma else []

    def lemma(self, word: str) -> Optional[str]:
        """`word` itself if WordNet has it, else the first of its base forms that WordNet has: from
        the exception list, then from the detachment rules ("dresses" → dress, not "dresse")."""
        form = word.strip().lower().replace(" ", "_")
        detached = [form[: -len(suffix)] + ending for suffix, ending in NOUN_SUFFIXES if form.endswith(suffix)]
        candidates = [form, *self._exceptions.get(form, ()), *detached]
        return next((c for c in candidates if c in self._index), None)

    def synset(self, offset: int) -> Synset:
        if offset not in self._synsets:  # every hypernym walk revisits the same few nodes
            with open(self.root / "data.noun", "rb") as handle:
                handle.seek(offset)
                self._synsets[offset] = _parse_data_line(handle.readline().decode("utf-8"))
        return self._synsets[offset]

    def ancestors(self, synset: Synset) -> set[str]:
        """Every lemma on every hypernym path above `synset` (itself included)."""
        seen, todo, lemmas = set(), [synset.offset], set()
        while todo:
            offset = todo.pop()
            if offset in seen:
                continue
            seen.add(offset)
            node = self.synset(offset)
            lemmas.update(node.lemmas)
            todo.extend(node.hypernyms)
        return lemmas


def _read_index(path: Path) -> dict[str, list[int]]:
    """lemma → synset offsets (sense order) from index.noun."""
    index = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        fields = line.split()
        synsets = int(fields[2])
        index[fields[0]] = [int(offset) for offset in fields[-synsets:]]
    return index


def _read_exceptions(path: Path) -> dict[str, list[str]]:
    """inflected form → its base forms, from a morphy exception list (noun.exc). A WordNet folder
    without one (DDKIT_WORDNET pointing at index and data files alone) still has the rules."""
    if not path.is_file():
        return {}
    return {form: bases for form, *bases in (line.split() for line in path.read_text(encoding="utf-8").splitlines()) if bases}


def _parse_data_line(line: str) -> Synset:
    head, _, gloss = line.partition("|")
    fields = head.split()
    words = int(fields[3], 16)
    lemmas = tuple(fields[4 + 2 * i] for i in range(words))
    at = 4 + 2 * words
    pointers = int(fields[at])
    hypernyms = tuple(int(fields[at + 1 + 4 * i + 1]) for i in range(pointers) if fields[at + 1 + 4 * i] in HYPERNYM_POINTERS)
    definition = re.sub(r"^\(.*?\)\s*", "", gloss.strip().split(";")[0].strip())
    return Synset(int(fields[0]), tuple(re.sub(r"\(.*\)$", "", lemma) for lemma in lemmas), definition, hypernyms)


def class_words(class_name: str) -> list[str]:
    """Words to look a class name up by: 'T-shirt/top' → t-shirt, top; 'Ankle boot' → ankle boot, boot."""
    words = []
    for part in class_name.split("/"):
        part = part.strip()
        words += [part, part.split()[-1]] if " " in part else [part]
    return list(dict.fromkeys(words))


def disambiguate(wordnet: WordNet, class_name: str, domains: Iterable[str]) -> Optional[Synset]:
    """The sense of `class_name` under one of `domains` (hypernym lemmas such as 'clothing');
    the most frequent sense when no sense falls under them; None when WordNet lacks the word.

    A name that is itself a WordNet offset (ImageNet's 'n02012849') is read directly.
    """
    if re.fullmatch(r"n\d{8}", class_name):
        return wordnet.synset(int(class_name[1:]))
    domains = {d.replace(" ", "_") for d in domains}
    first = None
    for word in class_words(class_name):
        senses = wordnet.senses(word)
        first = first or (senses[0] if senses else None)
        for sense in senses:
            if domains & wordnet.ancestors(sense):
                return sense
    return first
