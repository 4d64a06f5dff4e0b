"""WordNet's own morphology finds the lemma of an inflected noun."""

import pytest

from ddkit.prompts.wordnet import WordNet


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet()


@pytest.mark.parametrize(
    "word, lemma",
    [
        ("dresses", "dress"),  # ses → s, not the naive "dresse"
        ("boxes", "box"),  # xes → x
        ("ponies", "pony"),  # ies → y
        ("sandals", "sandal"),  # s → ""
        ("women", "woman"),  # men → man (and the exception list)
        ("geese", "goose"),  # the exception list alone: no rule makes it
        ("Tennis shoes", "tennis_shoe"),  # a collocation, as class names often are
        ("glasses", "glasses"),  # in the index itself (spectacles): left alone, not made "glass"
        ("dress", "dress"),
    ],
)
def test_an_inflected_noun_finds_its_lemma(wordnet, word, lemma):
    assert wordnet.lemma(word) == lemma


def test_senses_of_a_plural_are_those_of_its_lemma_and_unknown_words_have_none(wordnet):
    assert wordnet.senses("dresses") == wordnet.senses("dress") and "garment" in wordnet.senses("dresses")[0].gloss
    assert wordnet.lemma("qwertyuiops") is None and wordnet.senses("qwertyuiops") == []


def test_without_an_exception_list_the_rules_still_apply(tmp_path):
    for name in ("index.noun", "data.noun"):
        (tmp_path / name).symlink_to(WordNet().root / name)
    bare = WordNet(tmp_path)
    assert bare.lemma("dresses") == "dress" and bare.lemma("geese") is None
