"""The QA prompt and the answer-extraction rule."""

import pytest

from laffi.prompts import NO_ANSWER, extract_answer, qa_messages, qa_prompt


@pytest.mark.parametrize("reply,answer", [
    ("1931", "1931"),
    ("  1931.\nThe bridge opened then.", "1931"),
    ("\n\nAnswer: the Oska river", "the Oska river"),
    ('"trains"', "trains"),
    ("The answer is: Drun.", "Drun"),
    ("No answer", ""),
    ("no answer.", ""),
    ("There is no answer in the passage.", ""),
    ("The passage does not mention who designed it.", ""),
    ("Unanswerable", ""),
    ("None", ""),
    ("", ""),
    ("None of the bridges were built before 1900", "None of the bridges were built before 1900"),
    ("U.S.", "U.S"),
])
def test_extract_answer(reply, answer):
    assert extract_answer(reply) == answer


def test_prompt_holds_passage_question_and_instruction(tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    text = qa_prompt(tok, "  A passage.  ", " A question? ")
    assert "Passage: A passage.\n\nQuestion: A question?" in text
    assert NO_ANSWER in qa_messages("c", "q")[0]["content"]
    assert text.endswith("<|im_start|>assistant\n")  # generation starts where the answer goes
