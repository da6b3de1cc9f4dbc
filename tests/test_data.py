"""Loading SQuAD data: nested and flat layouts, bad records reported, seeded sampling, article splits."""

import json

import pytest

from laffi.errors import LaffiError
from laffi.squad.data import ARTICLE_SPLITS, load_squad, sample_examples, select_articles, titles


def test_nested_squad_v2(small_squad):
    exs, problems = load_squad(str(small_squad))
    assert problems == [] and [e.qid for e in exs] == ["q1", "q2", "q3", "q4", "q5"]
    assert exs[0].answers == ("1931",) and exs[0].title == "Velmar_bridge" and exs[2].is_impossible


def test_flat_jsonl_in_hf_layout(tmp_path):
    rows = [{"id": "a", "title": "T", "context": "Oslo is a city.", "question": "What is Oslo?",
             "answers": {"text": ["a city"], "answer_start": [8]}},
            {"id": "b", "title": "T", "context": "Oslo is a city.", "question": "Who?",
             "answers": {"text": [], "answer_start": []}}]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    exs, _ = load_squad(str(p))
    assert [e.answers for e in exs] == [("a city",), ()]


def test_bad_records_are_reported_and_good_ones_kept(tmp_path):
    ctx = "Oslo is a city."
    doc = {"data": [{"title": "T", "paragraphs": [{"context": ctx, "qas": [
        {"id": "ok", "question": "What is Oslo?", "answers": [{"text": "a city", "answer_start": 8}]},
        {"id": "noq", "answers": []},
        {"id": "badstart", "question": "Q?", "answers": [{"text": "a city", "answer_start": 2}]},
        {"id": "ok", "question": "dup?", "answers": []},
    ]}]}]}
    p = tmp_path / "d.json"
    p.write_text(json.dumps(doc))
    exs, problems = load_squad(str(p))
    assert [e.qid for e in exs] == ["ok"]
    assert len(problems) == 3
    assert "noq" in problems[0] and "question" in problems[0]
    assert "badstart" in problems[1] and "answer_start" in problems[1]
    assert "duplicate" in problems[2]


@pytest.mark.parametrize("content,match", [
    (b"\xff\xfe{not utf8", "not UTF-8"),
    (b"{nope", "not valid JSON"),
    (b'{"version": "v2.0"}', "not SQuAD data"),
    (b'{"data": []}', "no usable SQuAD questions"),
])
def test_unusable_files_are_clear_errors(tmp_path, content, match):
    p = tmp_path / "d.json"
    p.write_bytes(content)
    with pytest.raises(LaffiError, match=match):
        load_squad(str(p))


def test_missing_file_is_a_clear_error():
    with pytest.raises(LaffiError, match="does not exist"):
        load_squad("nowhere/data.json")


def test_sampling_is_seeded_and_keeps_file_order(small_squad):
    exs, _ = load_squad(str(small_squad))
    a, b = (sample_examples(exs, 3, seed=s) for s in (7, 7))
    assert len({tuple(e.qid for e in sample_examples(exs, 2, seed=s)) for s in range(20)}) > 1  # seeds differ
    assert [e.qid for e in a] == [e.qid for e in b]
    assert [e.qid for e in a] == sorted(e.qid for e in a)
    assert len(sample_examples(exs, None)) == 5 and len(sample_examples(exs, 99)) == 5


def test_select_articles_by_title_and_unknown_title(small_squad):
    exs, _ = load_squad(str(small_squad))
    assert {e.title for e in select_articles(exs, "Ada_Brill")} == {"Ada_Brill"}
    with pytest.raises(LaffiError, match="'Nope' is not in the data"):
        select_articles(exs, "Nope")


@pytest.mark.data
def test_shared_file_and_fixed_split(shared_squad):
    exs, problems = load_squad(str(shared_squad))
    assert len(exs) == 4827 and problems == []
    assert sorted(titles(exs)) == sorted(t for split in ARTICLE_SPLITS.values() for t in split)
    parts = {name: select_articles(exs, name) for name in ARTICLE_SPLITS}
    contexts = {name: {e.context for e in part} for name, part in parts.items()}
    assert not contexts["train"] & contexts["eval"] and not contexts["validation"] & contexts["eval"]
    assert not contexts["train"] & contexts["validation"]
    assert sum(len(p) for p in parts.values()) == 4827
