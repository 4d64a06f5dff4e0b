import pytest

from ddkit.data.fashion_mnist import CLASS_NAMES
from ddkit.errors import DDKitError
from ddkit.prompts.builder import PromptOptions, build_prompts, class_prompts, load_vocabulary
from ddkit.prompts.wordnet import WordNet, disambiguate


def test_wordnet_picks_the_sense_in_the_domain():
    wordnet = WordNet()
    assert "bird" in disambiguate(wordnet, "crane", ["bird"]).gloss
    assert "lift" in disambiguate(wordnet, "crane", ["device"]).gloss
    assert disambiguate(wordnet, "Ankle boot", ["footwear"]).gloss.startswith("footwear")
    assert disambiguate(wordnet, "n02012849", []).name == "crane"  # an ImageNet folder is its own sense
    assert disambiguate(wordnet, "qwertyuiop", ["bird"]) is None


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(DDKitError, match="apt-get install wordnet-base"):
        WordNet(tmp_path)


def test_prompts_are_deterministic_cover_every_class_and_vary():
    options = PromptOptions(vocabulary="fashion-mnist", per_class=6)
    first, again = build_prompts(options, CLASS_NAMES, 0), build_prompts(options, CLASS_NAMES, 0)
    assert first.prompts == again.prompts and len(first.prompts) == len(CLASS_NAMES)
    for label, prompts in enumerate(first.prompts):
        assert len(set(prompts)) == 6 and all(first.glosses[label] in p for p in prompts)
    assert build_prompts(options, CLASS_NAMES, 1).prompts != first.prompts
    assert "a canvas shoe" in first.prompts[7][0]  # the sneaker, not the person who sneaks


def test_with_every_axis_off_a_class_gets_its_bare_prompt():
    bare = build_prompts(PromptOptions(vocabulary="fashion-mnist", disambiguate=False, content=False, style=False),
                         CLASS_NAMES, 0)
    assert [p for [p] in bare.prompts] == class_prompts(load_vocabulary("fashion-mnist"), CLASS_NAMES)
    assert bare.prompts[9] == ["a photo of an ankle boot"]


def test_prompt_files_are_checked(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_text("a: [x, y]\nb: [z]\n")
    assert build_prompts(PromptOptions(file=str(path)), ["a", "b"], 0).prompts == [["x", "y"], ["z"]]
    path.write_text("a: [x, x]\nb: [z]\n")
    with pytest.raises(DDKitError, match="class 'a' repeats the prompt 'x'"):
        build_prompts(PromptOptions(file=str(path)), ["a", "b"], 0)
    path.write_text("a: []\nb: [z]\n")
    with pytest.raises(DDKitError, match="class 'a' has an empty prompt set"):
        build_prompts(PromptOptions(file=str(path)), ["a", "b"], 0)
    with pytest.raises(DDKitError, match="exactly the 3 classes"):
        build_prompts(PromptOptions(file=str(path)), ["a", "b", "c"], 0)


def test_a_local_language_model_adds_content(tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from ddkit.diffusion.text import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))  # any tokenizer: the model is random
    GPT2LMHeadModel(GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    options = PromptOptions(vocabulary="fashion-mnist", language_model=str(tmp_path / "lm"), generated=2, per_class=200,
                            style=False, disambiguate=False)
    prompts = build_prompts(options, CLASS_NAMES[:1], 0).prompts[0]
    assert any(p.startswith("a photo of a t-shirt, ") for p in prompts)  # generated phrases join the content list


def test_every_imagenet_class_gets_diversified_prompts_from_wordnet():
    from ddkit.data.class_lists import load_class_list

    imagenet = load_class_list("imagenet1k")
    prompts = build_prompts(PromptOptions(vocabulary="generic", per_class=4), imagenet.wnids, 0)
    assert len(prompts.prompts) == 1000 and all(prompts.glosses)  # every wnid is a WordNet sense with its gloss
    for readable, gloss, own in zip(imagenet.names, prompts.glosses, prompts.prompts):
        assert len(set(own)) == 4 and all(readable.split(",")[0].lower() in p.lower() and p.endswith(gloss) for p in own)
    cranes = [prompts.prompts[i][0] for i, w in enumerate(imagenet.wnids) if w in ("n02012849", "n03126707")]
    assert "wading bird" in cranes[0] and "heavy objects" in cranes[1]  # one name, two senses: the gloss tells them apart
