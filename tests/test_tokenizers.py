"""Tokenizers and chat templates the judges and the probe meet beyond the embedded model's: digits as single
characters, only with a leading space, merged into numbers, letters only as " A", a Llama-3-style template (BOS,
header tokens, a system prompt) and none at all. Each is built in memory with `tokenizers`; the judge must read
the right label tokens (checked on ids and on a judgement whose logits are set by hand) or refuse at load, and
the probe must count the prompt's and the response's own tokens only."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable, Sequence

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models as tok_models, pre_tokenizers, processors, trainers
from torch import nn
from transformers import PreTrainedTokenizerFast

from conftest import CHATML, CORPUS, tiny_llama
from creative_eval import activations, direction, judges
from creative_eval.judges import PairItem
from creative_eval.judges.base import DIGITS, Templates
from creative_eval.judges.hf import HFJudge, label_ids
from creative_eval.records import Pair, Story

LLAMA3 = (
    "{{ bos_token }}{% if messages[0]['role'] != 'system' %}<|start_header_id|>system<|end_header_id|>\n\n"
    "You are a helpful assistant.<|eot_id|>{% endif %}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
    "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PROMPT, RESPONSE = "A dragon council meets and approves the minutes.", "Once upon a time a clock argued."
A = Story(prompt_id="p1", condition="induced", prompt=PROMPT, text="A dog, a cat and a clock argued about the rain.")
B = Story(prompt_id="p1", condition="baseline", prompt=PROMPT, text="The space tanker delivers its cargo.")
JUDGE_TEXTS = [t.format(prompt=PROMPT, story=s.text, first=s.text, second=o.text)
               for t in Templates().rate + Templates().compare for s, o in ((A, B), (B, A))]
WORDS = CORPUS + JUDGE_TEXTS + [PROMPT, RESPONSE, "user\nassistant\n", "You are a helpful assistant."]
NUMBERS = ["Rated 10 of 10, then 42 and 100.", "(10) 10 42 100 10 42"] * 8


def _fast(tok: Tokenizer, name: str, template: str | None, bos: str, eos: str) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=eos,
                                   name_or_path=name)
    fast.chat_template = template
    return fast


def bpe(name: str, corpus: Sequence[str] = CORPUS, template: str | None = CHATML,
        specials: Sequence[str] = CHATML_SPECIALS, add_bos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `corpus` (every byte a token, so every single digit is one; merges only where
    the corpus has them); `add_bos` adds the BOS a plain encode gets, as Llama's tokenizers do."""
    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(corpus), trainers.BpeTrainer(vocab_size=700, special_tokens=list(specials),
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                              show_progress=False))
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{specials[0]} $A",
                                                           special_tokens=[(specials[0], tok.token_to_id(specials[0]))])
    return _fast(tok, name, template, specials[0] if add_bos else specials[1], specials[-1])


def words(name: str, keep: Callable[[str], bool], extra: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with exactly the pieces of WORDS (a word with its leading space is one piece) that
    `keep` allows, plus `extra`: what is not in it is [UNK], so a label's form is there or not, by construction."""
    split = pre_tokenizers.Split(Regex(r" ?[A-Za-z0-9]+| ?[^A-Za-z0-9\s]+|\s+"), behavior="isolated")
    pieces = {p for text in WORDS for p, _ in split.pre_tokenize_str(text)} | set(extra)
    vocab = {p: i for i, p in enumerate(["[UNK]", *CHATML_SPECIALS, *sorted(p for p in pieces if keep(p))])}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = split
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(CHATML_SPECIALS)
    fast = _fast(tok, name, CHATML, "<|im_start|>", "<|im_end|>")
    fast.unk_token = "[UNK]"
    return fast


TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    "single-digits": lambda: bpe("single-digits"),
    "leading-space-digits": lambda: words("leading-space-digits", lambda p: p not in DIGITS,
                                          [f" {d}" for d in DIGITS]),
    "merged-numbers": lambda: bpe("merged-numbers", CORPUS + NUMBERS),
    "leading-space-letters": lambda: words("leading-space-letters", lambda p: p not in ("A", "B"),
                                           [*DIGITS, " A", " B"]),
    "llama3-template": lambda: bpe("llama3-template", CORPUS + [f"{d} {d} {d}" for d in DIGITS] * 4, LLAMA3,
                                   LLAMA3_SPECIALS, add_bos=True),
    "no-template": lambda: bpe("no-template", template=None, add_bos=True),
    "no-template-no-bos": lambda: bpe("no-template-no-bos", template=None),
}


@pytest.fixture(scope="module")
def toks() -> dict[str, PreTrainedTokenizerFast]:
    return {name: make() for name, make in TOKENIZERS.items()}


def one(tok: PreTrainedTokenizerFast, text: str) -> int | None:
    """The id of `text` as one vocabulary entry (a space spelled " " or, byte-level, "Ġ"), looked up in the
    vocabulary itself rather than through the encoder under test; None when there is none."""
    vocab = tok.get_vocab()
    return vocab.get(text, vocab.get(text.replace(" ", "Ġ")))


class StubLM(nn.Module):
    """A stand-in model whose next-token logits are set by hand from the text it reads (-1e9 elsewhere), so a
    judgement's expected result is known exactly; it keeps every text it read."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, logits_for: Callable[[str], dict[int, float]]):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # the judge asks the model's device of its parameters
        self.config = SimpleNamespace(max_position_embeddings=512)  # the judge's input limit reads the context
        self.tokenizer, self.logits_for, self.seen = tokenizer, logits_for, []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            text = self.tokenizer.decode(ids[mask.bool()])
            self.seen.append(text)
            row = torch.full((len(self.tokenizer),), -1e9)
            for i, value in self.logits_for(text).items():
                row[i] = value
            rows.append(row)
        return SimpleNamespace(logits=torch.stack(rows)[:, None])


def form(name: str) -> str:
    """The labels' spelling the judge must read: bare, except where the tokenizer has digits only after a space."""
    return " {}" if name == "leading-space-digits" else "{}"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_label_ids_are_the_tokens_the_model_would_emit(toks, name):
    tok = toks[name]
    want = [one(tok, form(name).format(d)) for d in DIGITS]
    assert None not in want and len(set(want)) == 10
    assert label_ids(tok, DIGITS) == want
    assert all(tok.decode([i]).strip() == d for i, d in zip(label_ids(tok, DIGITS), DIGITS))


def test_the_tokenizers_are_what_their_names_say(toks):
    assert one(toks["single-digits"], " 7") is None and one(toks["single-digits"], "7") is not None
    assert one(toks["leading-space-digits"], "7") is None and one(toks["leading-space-digits"], " 7") is not None
    assert one(toks["merged-numbers"], "10") is not None
    assert one(toks["leading-space-letters"], "A") is None and one(toks["leading-space-letters"], " A") is not None
    both = toks["llama3-template"]
    assert one(both, "7") is not None and one(both, " 7") is not None and one(both, "7") != one(both, " 7")


def test_letters_only_with_a_leading_space_are_found_with_it(toks):
    tok = toks["leading-space-letters"]
    assert label_ids(tok, ["A", "B"]) == [tok.get_vocab()[" A"], tok.get_vocab()[" B"]]


def test_merged_numbers_never_stand_for_a_digit(toks):
    tok = toks["merged-numbers"]
    ids = label_ids(tok, DIGITS)
    assert one(tok, "10") not in ids and ids[1] == one(tok, "1") and ids[0] == one(tok, "0")


def _rating_logits(tok: PreTrainedTokenizerFast, spelling: str) -> dict[int, float]:
    """P(7) : P(2) = 3 : 1 among the digits spelled `spelling`; the other spelling and merged numbers get more mass
    still, which a judge reading the right tokens ignores: expected score (7*3 + 2*1) / 4 = 5.75."""
    other = " {}" if spelling == "{}" else "{}"
    decoys = {i: 8.0 for i in (one(tok, other.format(7)), one(tok, other.format(9)), one(tok, "10")) if i is not None}
    return {**decoys, one(tok, spelling.format(7)): math.log(3.0), one(tok, spelling.format(2)): 0.0}


@pytest.mark.parametrize("name", TOKENIZERS)
def test_rating_with_hand_set_logits_gives_the_known_score(toks, name):
    tok = toks[name]
    stub = StubLM(tok, lambda _text: _rating_logits(tok, form(name)))
    # the decoys hold most of the probability on purpose: the mass floor is tested in test_label_mass
    (rating,) = HFJudge(name, stub, tok, min_label_mass=0.0).rate([A])
    assert rating.status == "ok" and rating.argmax == 7
    assert rating.expected == pytest.approx(5.75, abs=1e-6)
    ending = {"llama3-template": "<|start_header_id|>assistant<|end_header_id|>\n\n",
              "no-template": "Answer with a single digit.", "no-template-no-bos": "Answer with a single digit."}
    assert stub.seen[0].endswith(ending.get(name, "<|im_start|>assistant\n"))  # read right after the turn opens


@pytest.mark.parametrize("name", TOKENIZERS)
def test_pairwise_with_hand_set_logits_gives_the_known_preference(toks, name):
    tok = toks[name]
    one_id, two_id = one(tok, form(name).format(1)), one(tok, form(name).format(2))

    def logits(text: str) -> dict[int, float]:
        """P(first) = 0.8 when A is shown first, 0.4 when B is."""
        p = 0.8 if text.index(A.text) < text.index(B.text) else 0.4
        return {one_id: math.log(p), two_id: math.log(1 - p)}

    (pref,) = HFJudge(name, StubLM(tok, logits), tok).compare([PairItem(A, B)])
    assert pref.p_first_ab == pytest.approx(0.8) and pref.p_first_ba == pytest.approx(0.4)
    assert pref.p_a == pytest.approx(0.7) and pref.decision == "A"


def test_a_tokenizer_without_digit_tokens_is_refused_at_load_with_the_fix():
    tok = words("no-digits", lambda p: p.strip() not in DIGITS)
    stub = StubLM(tok, lambda _text: {})
    for make in (lambda: HFJudge("j", stub, tok), lambda: judges.load_judge("self", stub, tok)):
        with pytest.raises(ValueError) as e:
            make()
        message = str(e.value)
        assert "\n" not in message and "'no-digits'" in message and "parse: generate" in message
    assert HFJudge("j", stub, tok, parse="generate").parse == "generate"  # the fix it names loads


@pytest.mark.parametrize("name", TOKENIZERS)
def test_counted_tokens_are_the_texts_own_tokens_only(toks, name):
    tok = toks[name]
    batch = activations.encode(tok, [PROMPT], [RESPONSE])
    ids, prompt, response = batch.input_ids[0], batch.prompt_mask[0], batch.response_mask[0]
    own_prompt = tok.encode(PROMPT, add_special_tokens=False)
    # the first position is the attention sink: without a template or BOS it is the prompt's first token
    assert ids[prompt].tolist() == (own_prompt[1:] if name == "no-template-no-bos" else own_prompt)
    assert ids[response].tolist() == tok.encode(RESPONSE, add_special_tokens=False)
    assert not set(ids[prompt | response].tolist()) & set(tok.added_tokens_decoder)
    if tok.bos_token == "<|begin_of_text|>":  # BOS once: from the template, not again from the encoder
        assert ids.tolist().count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


def test_llama3_template_tokens_and_system_prompt_are_not_counted(toks):
    tok = toks["llama3-template"]
    batch = activations.encode(tok, [PROMPT], [RESPONSE])
    text = tok.decode(batch.input_ids[0])
    assert "You are a helpful assistant." in text and text.count("<|start_header_id|>") == 3
    counted = tok.decode(batch.input_ids[0][batch.prompt_mask[0] | batch.response_mask[0]])
    assert counted == PROMPT + RESPONSE


@pytest.mark.parametrize("name", ["no-template", "no-template-no-bos"])
def test_without_a_chat_template_the_plain_text_is_read(toks, name):
    tok = toks[name]
    assert activations.render(tok, PROMPT, None, template=True) == PROMPT
    assert activations.render(tok, PROMPT, RESPONSE, template=True) == f"{PROMPT}\n\n{RESPONSE}"
    ids = activations.encode(tok, [PROMPT]).input_ids[0].tolist()
    assert ids == tok.encode(PROMPT)  # the tokenizer's own special tokens (BOS where it adds one), nothing else


def test_a_direction_made_without_a_template_records_it(toks):
    tok = toks["no-template"]
    pairs = [Pair(id=f"p{i}", creative=f"A dragon council argues {w}.", uncreative="A dragon council meets.",
                  split="validation") for i, w in enumerate(["about the rain", "at night", "with a clock"])]
    d = direction.extract(tiny_llama(vocab=len(tok)), tok, pairs, 2, model_id="tiny")
    assert d.meta["template"] == "false" and d.template is False
