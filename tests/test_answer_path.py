"""The LaFFi answer path on the tiny model: a draft (base model's or the variant's own) -> the variant's feedback
on it -> the answer the feedback names; one generate call per stage per batch; the draft is in the result."""

import json

import pytest

from laffi.inference.generation import Answer, GenerationConfig
from laffi.inference.selffeedback import AnswerPath, answer_all, read_answer_path, write_answer_path

PAIRS = [("The bridge opened in 1931.", "When did it open?"), ("Ada wrote three novels.", "How many novels?")]


@pytest.fixture
def calls(monkeypatch):
    """Counts model.generate calls and the rows of each."""
    import laffi.inference.generation as generation

    seen = []
    real = generation.generate_rows

    def counting(lm, prompts, variants, *args, **kwargs):
        seen.append((len(prompts), prompts[0][:40]))
        return real(lm, prompts, variants, *args, **kwargs)

    monkeypatch.setattr(generation, "generate_rows", counting)
    return seen


def test_feedback_path_on_base_drafts(tiny_lm, calls):
    paths = {"laffi": AnswerPath("feedback", "base")}
    out = answer_all(tiny_lm, PAIRS, ["sft", "laffi"], GenerationConfig(max_new_tokens=6, batch_size=16),
                     paths=paths)
    assert len(calls) == 2  # one batch of direct answers (sft, laffi, and base for the drafts), one of feedback
    base_drafts = answer_all(tiny_lm, PAIRS, ["base"], GenerationConfig(max_new_tokens=6))["base"]
    for i, r in enumerate(out["laffi"]):
        assert r.draft == base_drafts[i].direct.text and r.draft_by == "base"
        assert r.answer == r.feedback.revised_answer  # the shown answer is the one the feedback names
        assert r.fields()["answer_path"] == "via feedback on the base model's draft"
    assert all(r.feedback is None and r.answer == r.direct.text for r in out["sft"])  # sft answers directly


def test_feedback_on_own_drafts_and_precomputed_direct_answers(tiny_lm, calls):
    given = {"laffi": [Answer("1931", "1931"), Answer("", "no answer")]}
    out = answer_all(tiny_lm, PAIRS, ["laffi"], GenerationConfig(max_new_tokens=6),
                     paths={"laffi": AnswerPath("feedback", "self")}, direct=given)
    assert len(calls) == 1  # the drafts were given: only the feedback stage ran
    assert [r.draft for r in out["laffi"]] == ["1931", ""]


def test_the_adapter_folder_names_its_path(tmp_path):
    folder = tmp_path / "laffi"
    folder.mkdir()
    assert read_answer_path(folder) == AnswerPath()  # nothing known: direct
    (folder / "training_config.json").write_text(json.dumps({"train": {"method": "laffi"}}))
    assert read_answer_path(folder) == AnswerPath("feedback", "base")  # trained on feedback alone
    write_answer_path(folder, AnswerPath("feedback", "self"))
    assert read_answer_path(folder) == AnswerPath("feedback", "self")


def test_eval_writes_both_paths_in_the_official_format(tiny_lm, small_squad, tmp_path):
    from laffi.evaluation.evaluate import evaluate_variants
    from laffi.squad.data import load_squad

    examples, _ = load_squad(str(small_squad))
    result = evaluate_variants(tiny_lm, examples, ["base", "laffi"], GenerationConfig(max_new_tokens=6),
                               out_dir=tmp_path, paths={"laffi": AnswerPath("feedback", "base")})
    m = result["variants"]["laffi"]
    assert {"f1", "direct_f1", "revised_f1", "abstain", "balanced_verdict_accuracy"} <= set(m)
    assert m["f1"] == m["revised_f1"] and "f1" in m["ci"] and m["ci"]["f1"][0] <= m["f1"] <= m["ci"]["f1"][1]
    shown = json.loads((tmp_path / "laffi" / "predictions.json").read_text())
    via = json.loads((tmp_path / "laffi" / "predictions_feedback.json").read_text())
    direct = json.loads((tmp_path / "laffi" / "predictions_direct.json").read_text())
    assert shown == via and set(direct) == set(shown) == {e.qid for e in examples}
    assert "revised_f1" not in result["variants"]["base"]


def test_eval_on_the_verify_path_keeps_the_direct_score_the_folds_combine(tiny_lm, small_squad, tmp_path):
    from laffi.evaluation.evaluate import evaluate_variants
    from laffi.io import read_jsonl
    from laffi.pipeline.folds import answer_records, has_verdicts
    from laffi.squad.data import load_squad

    examples, _ = load_squad(str(small_squad))
    gen = GenerationConfig(max_new_tokens=6)
    evaluate_variants(tiny_lm, examples, ["laffi"], gen, out_dir=tmp_path / "v",
                      paths={"laffi": AnswerPath("verify", "self")})
    evaluate_variants(tiny_lm, examples, ["laffi"], gen, out_dir=tmp_path / "d",
                      paths={"laffi": AnswerPath("direct", "self")})
    verified = read_jsonl(tmp_path / "v" / "laffi" / "examples.jsonl")
    direct = read_jsonl(tmp_path / "d" / "laffi" / "examples.jsonl")
    assert {r["path_kind"] for r in verified} == {"verify"} and {r["path_kind"] for r in direct} == {"direct"}
    assert [r["direct_na_prob"] for r in verified] == pytest.approx([r["na_prob"] for r in direct], abs=1e-5)
    records = answer_records(verified, tmp_path)
    assert has_verdicts(records) and not has_verdicts(answer_records(direct, tmp_path))
    # the same direct score and span either way, so the two paths' thresholds are one recipe's
    plain = answer_records(direct, tmp_path)
    assert [r[3] for r in records] == pytest.approx([r[3] for r in plain], abs=1e-5)
    assert [r[4:7] for r in records] == [r[4:7] for r in plain]
    assert [r[7] for r in records] == pytest.approx([v["na_prob"] for v in verified], abs=1e-6)  # "span": shown
