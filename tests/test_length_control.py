"""Length-orthogonal fitting of the human-calibrated direction: on a synthetic set where the preferred text is
mostly the shorter one and a state axis tracks log length, the plain fit reads length and the `residual` fit
does not (on its training texts, by construction), while both still find the planted preference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats as sps

from creative_eval import sources
from creative_eval.people import humans
from creative_eval.probe.textstates import States
from creative_eval.records import Story
from creative_eval.sources import calibration

HIDDEN = 64
RESIDUAL = calibration.Fitting(length_control="residual")


def length_confounded(n: int = 120, seed: int = 0) -> tuple[States, States, torch.Tensor]:
    """Pairs whose preferred text carries +quality along axis q and is the shorter in ~75% of pairs, with a
    state axis that grows with log length: the confound of WQ, planted."""
    g = torch.Generator().manual_seed(seed)
    q, ell = torch.nn.functional.normalize(torch.randn(2, HIDDEN, generator=g), dim=1)
    ell = torch.nn.functional.normalize(ell - (ell @ q) * q, dim=0)
    short = torch.exp(torch.rand(n, generator=g) * 2 + 3)
    longer = short * torch.exp(torch.rand(n, generator=g) * 1.5 + 0.2)
    preferred_short = torch.rand(n, generator=g) < 0.75
    n_good, n_bad = torch.where(preferred_short, short, longer).round(), torch.where(preferred_short, longer, short).round()

    def states(n_tok: torch.Tensor, quality: float) -> States:
        x = torch.randn(n, HIDDEN, generator=g) * 0.05 + quality * q + 0.3 * torch.log(n_tok)[:, None] * ell
        return States(x, x, n_tok)

    return states(n_good, 0.1), states(n_bad, 0.0), q


def _text_corr(good: States, bad: States, v: torch.Tensor) -> tuple[float, float]:
    """(Pearson, Spearman) of the probe scores with log length over all training texts."""
    scores = torch.cat([good.scores(v), bad.scores(v)]).numpy()
    length = np.log(torch.cat([good.n_tokens, bad.n_tokens]).numpy())
    return float(np.corrcoef(scores, length)[0, 1]), float(sps.spearmanr(scores, length).statistic)


@pytest.mark.parametrize("method", calibration.METHODS)
def test_a_length_orthogonal_fit_is_uncorrelated_with_length_where_the_plain_fit_is_not(method):
    good, bad, q = length_confounded()
    plain, ortho = calibration.Fitting(method)(good, bad), calibration.Fitting(method, "residual")(good, bad)
    assert _text_corr(good, bad, plain)[1] < -0.3  # the plain fit is a length detector here: the test can fail
    pearson, spearman = _text_corr(good, bad, ortho)
    assert abs(pearson) < 1e-4 and abs(spearman) < 0.1
    margins = ((good.unit - bad.unit) @ ortho).double()
    assert abs(float(margins @ calibration.log_length_ratio(good, bad))) < 1e-4 * float(margins.norm())
    assert float(ortho.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float(ortho @ q) > 0.5  # the planted preference is still what it finds


def test_on_held_out_pairs_the_plain_fit_is_shorter_wins_and_the_length_orthogonal_fit_is_not():
    good, bad, _ = length_confounded(n=150, seed=1)
    texts = lambda st, side: [Story(prompt_id=f"w{i}", condition=side, prompt="Write.",  # noqa: E731
                                    text=" ".join([f"{side}-{i}"] + ["w"] * (int(k) - 1)))
                              for i, k in enumerate(st.n_tokens)]
    plain, ortho = (calibration.validate(good, bad, texts(good, "p1"), texts(bad, "p2"), f, n_random=20)
                    for f in (calibration.Fitting(), RESIDUAL))
    assert ortho["fit"] == "mean-residual" and ortho["pairs"] == 150 and ortho["groups"] == 150
    assert plain["agree_when_longer_chosen"]["estimate"] < 0.2 < 0.9 < plain["agree_when_shorter_chosen"]["estimate"]
    assert ortho["agree_when_longer_chosen"]["estimate"] > 0.6 and ortho["agree_when_shorter_chosen"]["estimate"] > 0.6
    assert ortho["agreement"]["estimate"] > 0.65 and ortho["random"]["percentile"] > 0.9
    assert ortho["length_logit"]["ci_low"] > 0


def test_residualise_keeps_the_difference_at_equal_length():
    ratio = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    diffs = 1.5 - 2.0 * ratio[:, None].float() + torch.tensor([[0.3], [-0.3], [-0.3], [0.3]])  # 1.5 at equal length
    left = calibration.residualise(diffs, ratio)
    assert left.squeeze().tolist() == pytest.approx([1.8, 1.2, 1.2, 1.8])
    assert float(left.mean()) == pytest.approx(1.5)


def test_a_fitting_is_checked_once_and_named_in_the_cache_key():
    assert calibration.Fitting().name == "mean" and RESIDUAL.name == "mean-residual"
    with pytest.raises(ValueError, match="length control 'words'.*residual"):
        calibration.Fitting(length_control="words")
    with pytest.raises(ValueError, match="--length-control residual applies to the humans and hanna sources only"):
        sources.check_fitting("stories", RESIDUAL)
    sources.check_fitting("humans", RESIDUAL)
    sources.check_fitting("stories", calibration.Fitting())


def fake_wq(folder, n: int = 12) -> None:
    """A WQ-shaped file: each pair twice (sides swapped), the shorter paragraph mostly preferred."""
    words = "the clock argued with a cat about rain in the city at night".split()
    rows = []
    for i in range(n):
        short, long_ = " ".join([f"pair {i}", *words[: 3 + i % 4]]), " ".join([f"pair {i}", *words * (1 + i % 3)])
        pref = "1" if i % 4 else "2"
        for j, (p1, p2, r) in enumerate(((short, long_, pref), (long_, short, "2" if pref == "1" else "1"))):
            rows.append({"id": f"{i}-{j}", "original_id": str(i), "paragraph1": p1, "paragraph2": p2,
                         "reference_preference": r, "source": "Ben Lerner"})
    folder.mkdir()
    (folder / humans.WQ_FILE).write_text(json.dumps(rows), encoding="utf-8")


def test_the_humans_source_fits_length_orthogonal_cached_apart_and_carries_its_fit(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path / "cache"))
    fake_wq(tmp_path / "wq")
    monkeypatch.setattr(humans, "WQ_DIR", tmp_path / "wq")
    plain, plain_path = sources.resolve("humans", model, tokenizer, "tiny", 2)
    ortho, ortho_path = sources.resolve("humans", model, tokenizer, "tiny", 2, fitting=RESIDUAL)
    assert "-humans-mean-" in plain_path and "-humans-mean-residual-" in ortho_path
    assert (plain.meta["length_control"], ortho.meta["length_control"]) == ("none", "residual")
    assert not torch.allclose(plain.vector, ortho.vector)
    good, bad, _, _ = sources.label_states(model, tokenizer, 2)
    assert _text_corr(good, bad, ortho.vector)[0] == pytest.approx(0.0, abs=1e-4)
    assert len(ortho.meta["trained_on"].split(",")) == 12  # the probe judge refuses these pairs
    again, _ = sources.resolve("humans", model, tokenizer, "tiny", 2, fitting=RESIDUAL)
    assert torch.equal(again.vector, ortho.vector)  # read back from its own cache file


def test_wq_states_are_read_once_per_model_and_layer(tiny, tmp_path, monkeypatch):
    """Fitting the humans direction and validating it read WQ's texts in one pass."""
    from creative_eval import activations

    model, tokenizer = tiny
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path / "cache"))
    fake_wq(tmp_path / "wq")
    monkeypatch.setattr(humans, "WQ_DIR", tmp_path / "wq")
    calls = []
    real = activations.batches
    monkeypatch.setattr(activations, "batches", lambda *a, **k: calls.append(1) or real(*a, **k))
    d, _ = sources.resolve("humans", model, tokenizer, "tiny", 3)
    good, bad, _, _ = sources.label_states(model, tokenizer, 3)
    assert len(calls) == 1 and len(good.mean) == len(bad.mean) == 12
    sources.label_states(model, tokenizer, 2)
    assert len(calls) == 2  # another layer is another pass


def test_the_probe_humans_residual_preset_judges_with_the_length_orthogonal_fit(tiny, tmp_path, monkeypatch):
    from creative_eval import judges
    from creative_eval.judges import presets

    model, tokenizer = tiny
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path / "cache"))
    fake_wq(tmp_path / "wq")
    monkeypatch.setattr(humans, "WQ_DIR", tmp_path / "wq")
    cfg = presets.load("probe-humans-residual")
    judge = judges.load_judge({**cfg, "layer": 2}, model, tokenizer)
    assert judge.direction.meta["length_control"] == "residual"
    want, _ = sources.resolve("humans", model, tokenizer, "tiny", 2, fitting=RESIDUAL)
    assert torch.equal(judge.direction.vector, want.vector)
    assert judge.template_hash.endswith("-humans-length-residual")
    with pytest.raises(ValueError, match="fitted on 1 of these stories"):
        judge.rate([Story(prompt_id="wq-3", condition="p1", prompt="Write a paragraph.", text="The cat")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: probe\ndirection: auto\nlength_control: residual\n", encoding="utf-8")
    with pytest.raises(presets.PresetError, match="bad.yaml.*'length_control' applies to 'direction: humans' or 'hanna' only"):
        presets.load(bad)
    bad.write_text("backend: probe\ndirection: humans\nlength_control: words\n", encoding="utf-8")
    with pytest.raises(presets.PresetError, match="'length_control' must be one of"):
        presets.load(bad)


def test_the_direction_command_fits_length_orthogonal_and_prints_its_held_out_agreement(tiny, tmp_path, monkeypatch,
                                                                                        capsys):
    from creative_eval import cli, direction, models

    model, tokenizer = tiny
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path / "cache"))
    fake_wq(tmp_path / "wq")
    monkeypatch.setattr(humans, "WQ_DIR", tmp_path / "wq")
    monkeypatch.setattr(models, "load", lambda *a, **k: (model, tokenizer))
    out = tmp_path / "d.safetensors"
    assert cli.main(["direction", "--model", "tiny", "--source", "humans", "--length-control", "residual",
                     "--layer", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fit mean-residual: agreement" in printed and "among random directions" in printed
    assert "length-controlled coefficient" in printed and "not a validation" in printed
    assert direction.load(out).meta["length_control"] == "residual"
