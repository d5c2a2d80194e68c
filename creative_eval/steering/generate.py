"""Stories for the three conditions of the paper on the HF backend (the rule of the conditions is
`steering.settings`), resumable batch by batch; perplexity under the plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import activations, outputs
from creative_eval.direction import Direction
from creative_eval.records import CONDITIONS, Pair, Story, append_jsonl, read_records, story_id
from creative_eval.steering import gating, hooks, settings
from creative_eval.steering.settings import Steering


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; paper defaults. temperature 0 means greedy."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8

    def kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0}


@dataclass(kw_only=True)
class Generation:
    """Generated text and how many tokens it took; under a gate, how many decode steps it steered of those read."""

    text: str
    n_tokens: int
    steered_steps: int | None = None
    gate_steps: int | None = None


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    steers: Sequence[hooks.Steer] = (),
    gate: gating.Gate | None = None,
    sampling: Sampling = Sampling(),
    template: bool = True,
    progress: bool = False,
) -> list[Generation]:
    """Batched generation (left-padded), optionally steered; each batch is seeded from `sampling.seed`
    and its index, so the same prompts give the same stories in every condition when unsteered. A `gate`
    opens and closes the one steer per decode step and row (gating) and counts the steps it steered."""
    if gate is not None and len(steers) != 1:
        raise ValueError(f"a gate controls exactly one steer, got {len(steers)}")
    out: list[Generation] = []
    device = next(model.parameters()).device
    eos = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    bar = tqdm(total=len(prompts), disable=not progress, desc="generate", unit="story")
    for b, k in enumerate(range(0, len(prompts), sampling.batch_size)):
        batch = activations.encode(tokenizer, prompts[k : k + sampling.batch_size], template=template).left_padded()
        state, gated = gate.attach(steers[0]) if gate else (None, None)
        torch.manual_seed(sampling.seed + b)
        with torch.inference_mode(), hooks.steering(model, [gated] if gated else steers, trace=state):
            ids = model.generate(
                input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling.kwargs(),
            )
        new = ids[:, batch.input_ids.shape[1] :].cpu()
        alive = torch.cumprod(~torch.isin(new, torch.tensor(sorted(eos))), dim=1).bool()
        steered, read = state.steered(new, eos) if state else ([None] * len(new), [None] * len(new))
        for row in range(new.shape[0]):
            n = int(alive[row].sum())
            out.append(Generation(text=tokenizer.decode(new[row, :n], skip_special_tokens=True), n_tokens=n,
                                  steered_steps=steered[row], gate_steps=read[row]))
        bar.update(new.shape[0])
    bar.close()
    return out


def condition_batches(pairs: Sequence[Pair], conditions: Sequence[str], batch_size: int, *,
                      done: Callable[[str, Pair], bool] = lambda condition, pair: False,
                      progress: bool = False) -> Iterator[tuple[str, int, list[Pair], list[str]]]:
    """(condition, batch index b, pairs, their prompts) condition by condition, leaving out the batches whose
    stories are all `done`; b counts every batch of the condition, so whatever is skipped batch b keeps its seed.
    Every backend walks the conditions this way. The bar counts stories: it starts at those done before, and a
    batch adds its new ones once the caller has taken it in (when it asks for the next), never before."""
    settings.check_conditions(conditions)
    runs = [(condition, b, list(pairs[k : k + batch_size])) for condition in conditions
            for b, k in enumerate(range(0, len(pairs), batch_size))]
    made = {(c, b): sum(not done(c, p) for p in batch) for c, b, batch in runs}
    runs = [(c, b, batch) for c, b, batch in runs if made[c, b]]
    total = len(conditions) * len(pairs)
    with tqdm(total=total, initial=total - sum(made.values()), disable=not progress, desc="generate",
              unit="story") as bar:
        for condition, b, batch in runs:
            bar.set_postfix_str(condition, refresh=False)
            yield condition, b, batch, [settings.prompt_of(p, condition) for p in batch]
            bar.update(made[condition, b])


def story_batches(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    direction: Direction,
    *,
    steering: Steering = Steering(),
    conditions: Sequence[str] = CONDITIONS,
    sampling: Sampling = Sampling(),
    model_id: str = "",
    direction_file: str = "",
    done: Callable[[str, Pair], bool] = lambda condition, pair: False,
    progress: bool = False,
) -> Iterator[list[Story]]:
    """Stories batch by batch, condition by condition, every setting recorded on each story. Batch b of a
    condition is seeded from `sampling.seed + b` whichever batches run, so a resumed run (`done` says which
    stories are made) makes the same stories as an uninterrupted one."""
    steer = hooks.Steer.of(direction, steering)
    for condition, b, batch, prompts in condition_batches(pairs, conditions, sampling.batch_size, done=done,
                                                          progress=progress):
        recorded = story_settings(direction, condition, steering, sampling, model_id=model_id,
                                  direction_file=direction_file)
        gens = generate(model, tokenizer, prompts, steers=[steer] if settings.is_steered(condition) else [],
                        sampling=replace(sampling, seed=sampling.seed + b), template=direction.template)
        yield [Story(prompt_id=p.id, condition=condition, prompt=prompt, text=g.text,
                     settings={**recorded, "n_tokens": g.n_tokens}) for p, prompt, g in zip(batch, prompts, gens)]


def story_settings(direction: Direction, condition: str, steering: Steering, sampling: Sampling, *, model_id: str,
                   direction_file: str) -> dict:
    """What a story of `condition` made by this backend records (all but its own token count)."""
    return settings.story_settings(direction, condition, steering, model_id=model_id, direction_file=direction_file,
                                   **sampling.__dict__)


def stories(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], direction: Direction,
            **kwargs) -> list[Story]:
    """Stories for each pair in each condition (the keyword arguments of `story_batches`), in memory."""
    return [s for batch in story_batches(model, tokenizer, pairs, direction, **kwargs) for s in batch]


def resume(path: str | Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair],
           direction: Direction, *, steering: Steering = Steering(), conditions: Sequence[str] = CONDITIONS,
           sampling: Sampling = Sampling(), model_id: str = "", direction_file: str = "",
           progress: bool = False) -> list[Story]:
    """HF stories appended to `path` batch by batch as they are made (`append_resumed`)."""
    how = {"steering": steering, "sampling": sampling, "model_id": model_id, "direction_file": direction_file}
    return append_resumed(path, pairs, conditions, want=lambda condition: story_settings(direction, condition, **how),
                          batches=lambda done: story_batches(model, tokenizer, pairs, direction, conditions=conditions,
                                                             done=done, progress=progress, **how))


def append_resumed(path: str | Path, pairs: Sequence[Pair], conditions: Sequence[str], *,
                   want: Callable[[str], dict],
                   batches: Callable[[Callable[[str, Sequence[Pair]], bool]], Iterator[list[Story]]]) -> list[Story]:
    """Stories appended to `path` (fsync'ed) batch by batch as they are made, under the file's lock; a story
    already there with the same settings is kept, not remade, so a killed run loses at most one batch and a
    re-run finishes it. A story already there with other settings (another backend's, too) is refused: pass
    another file. `want(condition)` is what a backend's story of that condition records; `batches(done)` makes
    the backend's stories, leaving out the batches whose stories `done(condition, pair)` says are made."""
    path = Path(path)
    with outputs.writing(path):
        done = {s.id: s for s in read_records(path, Story)} if path.is_file() else {}
        for condition in conditions:
            expected = {"backend": None, **want(condition)}  # the HF backend records none
            for p in pairs:
                _check_same(path, done.get(story_id(p.id, condition)), expected)

        def finished(condition: str, pair: Pair) -> bool:
            return story_id(pair.id, condition) in done

        for batch in batches(finished):
            for story in batch:
                if story.id not in done:
                    append_jsonl(path, story)
                    done[story.id] = story
    return [done[story_id(p.id, c)] for c in conditions for p in pairs]


def check_out(path: str | Path, pairs: Sequence[Pair], conditions: Sequence[str], *, steering: Steering,
              sampling: Sampling, model_id: str, backend: str | None = None) -> int:
    """Before any model loads: refuse an output holding stories of these prompts made with other settings or by
    another backend (None: HF; what the direction decides, its layer, template and file, `resume` checks again
    once it is known). Returns how many of the stories asked for are there already, to be kept."""
    path = Path(path)
    if not path.is_file():
        return 0
    done = {s.id: s for s in read_records(path, Story)}
    there = [(done[story_id(p.id, c)], c) for c in conditions for p in pairs if story_id(p.id, c) in done]
    for story, condition in there:
        want = {"model": model_id, "backend": backend, **steering.record(condition), **sampling.__dict__}
        _check_same(path, story, want)
    return len(there)


def _check_same(path: Path, story: Story | None, want: dict) -> None:
    if story is None:
        return
    diff = {k: (story.settings.get(k), v) for k, v in want.items() if story.settings.get(k) != v}
    if diff:
        shown = ", ".join(f"{k} {a!r} there vs {b!r} now" for k, (a, b) in sorted(diff.items())[:4])
        raise ValueError(f"{path}: story {story.id} was made with other settings ({shown}); pass another --out, "
                         "or the same settings to resume")


@torch.inference_mode()
def perplexity(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], texts: Sequence[str],
    *, template: bool = True, batch_size: int = 8,
) -> list[float]:
    """Perplexity of each text given its prompt under the (unsteered) model: a coherence check for steering."""
    out = [float("nan")] * len(prompts)
    device = next(model.parameters()).device
    for k in range(0, len(prompts), batch_size):
        batch = activations.encode(tokenizer, prompts[k : k + batch_size], texts[k : k + batch_size], template=template)
        logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch.input_ids[:, 1:, None].to(device))[..., 0]
        mask = batch.response_mask[:, 1:].to(device)
        nll = -(logp * mask).sum(1) / mask.sum(1).clamp(min=1)
        for row, value in enumerate(nll.exp().tolist()):
            out[k + row] = value if batch.response_mask[row].any() else float("nan")
    return out
