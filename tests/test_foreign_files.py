"""Files written by other tools: a UTF-8 byte-order mark, CRLF line ends, a last line without its newline, line
separators inside a JSON string, and ids whose Unicode is NFC in one file and NFD in another, in stories, judgement
stores, pairs and human labels (JSONL and CSV). Each is accepted, or refused with one clear line."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from creative_eval import cli, pairs, records, store
from creative_eval.people import humans
from creative_eval.records import Story, iter_jsonl, read_stories
from test_writers import FakeServer, _preset

BOM = "\ufeff"
CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
assert CAFE_NFC != CAFE_NFD


def _story(prompt_id: str, condition: str, text: str = "A story.") -> dict:
    return {"prompt_id": prompt_id, "condition": condition, "prompt": "Write a story.", "text": text}


def _write(path: Path, lines: list[str], *, bom: bool = False, eol: str = "\n", last_eol: bool = True) -> Path:
    text = eol.join(lines) + (eol if last_eol else "")
    path.write_bytes(((BOM if bom else "") + text).encode("utf-8"))
    return path


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("last_eol", [True, False])
def test_stories_jsonl_with_bom_crlf_or_no_last_newline_are_read_whole(tmp_path, bom, eol, last_eol):
    rows = [_story(f"p{i}", c) for i in range(2) for c in ("baseline", "induced")]
    path = _write(tmp_path / "s.jsonl", [json.dumps(r) for r in rows], bom=bom, eol=eol, last_eol=last_eol)
    assert [s.id for s in read_stories(path)] == ["p0:baseline", "p0:induced", "p1:baseline", "p1:induced"]


def test_only_a_torn_last_line_is_skipped(tmp_path):
    whole = json.dumps(_story("p0", "baseline"))
    path = _write(tmp_path / "s.jsonl", [whole, whole[:-9]], last_eol=False)  # a killed writer's fragment
    assert [i for i, _ in iter_jsonl(path)] == [1]
    path = _write(tmp_path / "s.jsonl", [whole, "{not json"], last_eol=True)  # a bad line with its newline: refused
    with pytest.raises(ValueError, match=r"s.jsonl:2: not valid JSON .*; fix or delete that line"):
        list(iter_jsonl(path))


def test_line_separators_inside_a_story_survive_the_round_trip(tmp_path):
    text = "First line\u2028second\u0085third\u2029end\x1c."
    path = tmp_path / "s.jsonl"
    records.append_jsonl(path, Story(prompt_id="p0", condition="baseline", prompt="Write.", text=text))
    records.append_jsonl(path, Story(prompt_id="p0", condition="induced", prompt="Write.", text="Plain."))
    assert [s.text for s in read_stories(path)] == [text, "Plain."]


def test_appending_to_a_file_from_another_tool_keeps_its_records(tmp_path):
    """A BOM, CRLF and a whole last record without its newline: the append adds the newline, cuts nothing."""
    path = _write(tmp_path / "r.jsonl", [json.dumps({"key": "a", "v": 1}), json.dumps({"key": "b", "v": 2})],
                  bom=True, eol="\r\n", last_eol=False)
    store.append(path, "c", {"v": 3})
    assert [obj["key"] for _, obj in store.records(path)] == ["a", "b", "c"]
    single = _write(tmp_path / "one.jsonl", [json.dumps({"key": "a", "v": 1})], bom=True, last_eol=False)
    store.append(single, "b", {"v": 2})  # the BOM-led first line is whole, not a torn fragment
    assert [obj["key"] for _, obj in store.records(single)] == ["a", "b"]


def test_condition_names_are_read_in_nfc_and_a_command_line_spelling_matches_them(tmp_path):
    srv = FakeServer()
    path = _write(tmp_path / "s.jsonl", [json.dumps(_story("p0", CAFE_NFD, "Steamed milk.")),
                                         json.dumps(_story("p0", "baseline", "Tap water."))], bom=True, eol="\r\n")
    assert {s.condition for s in read_stories(path)} == {CAFE_NFC, "baseline"}
    out = tmp_path / "prefs.jsonl"
    try:
        for spelling in (CAFE_NFC, CAFE_NFD):  # however it is typed, it names the same stories; the re-run resumes
            assert cli.main(["judge", "--judge", str(_preset(tmp_path, srv.url)), "--mode", "pairwise", "--compare",
                             f"{spelling}:baseline", "--input", str(path), "--out", str(out)]) == 0
    finally:
        srv.close()
    rows = [obj for _, obj in iter_jsonl(out)]
    assert len(rows) == 1 and rows[0]["story_a"] == f"p0:{CAFE_NFC}"


def test_one_id_spelled_twice_in_different_unicode_is_refused_saying_so(tmp_path):
    path = _write(tmp_path / "s.jsonl", [json.dumps(_story("p0", CAFE_NFC)), json.dumps(_story("p0", CAFE_NFD))])
    with pytest.raises(ValueError) as e:
        read_stories(path)
    assert str(e.value) == (f"{path}:2: duplicate id 'p0:{CAFE_NFC}': story p0:{CAFE_NFC} again (first on line 1) "
                            "(the two lines spell it with different Unicode code points, the same text once "
                            "normalised to NFC); keep one story per prompt_id and condition")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_pairs_from_a_spreadsheet_or_an_editor_load(tmp_path, suffix):
    rows = [{"id": f"{CAFE_NFD}-{i}", "creative": f"A wild tale {i}.", "uncreative": f"A plain list {i}.",
             "split": "test"} for i in range(3)]
    if suffix == ".csv":
        lines = ["id,creative,uncreative,split"] + [",".join(r.values()) for r in rows]
    else:
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    path = _write(tmp_path / f"pairs{suffix}", lines, bom=True, eol="\r\n", last_eol=False)
    assert [p.id for p in pairs.load_pairs(path, "test")] == [f"{CAFE_NFC}-{i}" for i in range(3)]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_human_labels_from_a_spreadsheet_load_with_nfc_ids(tmp_path, suffix):
    rows = [{"item_id": "i1", "story_a": f"p0:{CAFE_NFD}", "story_b": "p0:baseline", "choice": "A"},
            {"item_id": "i2", "story_a": f"p1:{CAFE_NFD}", "story_b": "p1:baseline", "choice": "tie"}]
    if suffix == ".csv":
        lines = ["item_id,story_a,story_b,choice"] + [",".join(r.values()) for r in rows]
    else:
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    path = _write(tmp_path / f"labels{suffix}", lines, bom=True, eol="\r\n", last_eol=False)
    labels = humans.load_labels(path)
    assert [(h.item_id, h.story_a, h.choice) for h in labels] == [("i1", f"p0:{CAFE_NFC}", "A"),
                                                                  ("i2", f"p1:{CAFE_NFC}", "tie")]


@pytest.mark.parametrize("name,read", [
    ("s.jsonl", read_stories),
    ("labels.csv", humans.load_labels),
    ("pairs.csv", pairs.load_pairs),
])
@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_file_in_another_encoding_is_refused_with_one_line(tmp_path, name, read, encoding):
    text = {"s.jsonl": json.dumps(_story("p0", "baseline", "Café au lait."), ensure_ascii=False) + "\n",
            "labels.csv": "item_id,story_a,story_b,choice\ni1,p0:café,p0:baseline,A\n",
            "pairs.csv": "id,creative,uncreative,split\ncafé,A wild tale.,A plain list.,test\n"}[name]
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    with pytest.raises(ValueError) as e:
        read(path)
    message = str(e.value)
    assert message.startswith(f"{path}:") and "not UTF-8" in message and message.endswith("re-save the file as UTF-8")
    assert "\n" not in message
