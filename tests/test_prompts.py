"""The QA prompt and the answer-extraction rule."""

import pytest

from laffi.inference.prompts import NO_ANSWER, extract_answer, qa_messages, qa_prompt


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
    # a closing quote that nothing opened ends the answer: the model went on to quote the passage
    ('1874" from the passage: "The Halvard lighthouse was lit in 1874. "". The', "1874"),
    ('"1874" from the passage: "The Halvard lighthouse was lit in 1874."', "1874"),
    ("Nine Quiet Rooms” won the Arden Prize", "Nine Quiet Rooms"),
    ('"trains".', "trains"),
    ('the "Iron Lady" of Britain', 'the "Iron Lady" of Britain'),  # a quote it opened itself stays
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


def test_fit_context_keeps_short_passages_whole(tiny_lm):
    from laffi.inference.prompts import fit_context

    assert fit_context(tiny_lm.tokenizer, "The bridge is old.", "What is old?", 100) == ("The bridge is old.", None)


def test_fit_context_cuts_around_the_best_matching_sentence_and_says_so(tiny_lm):
    from laffi.inference.prompts import fit_context

    tok = tiny_lm.tokenizer
    filler = [f"Sentence {i} is about the weather in the valley." for i in range(300)]
    context = " ".join(filler[:150] + ["The Velmar bridge opened in 1931."] + filler[150:])
    kept, notice = fit_context(tok, context, "When did the Velmar bridge open?", 120)
    assert "The Velmar bridge opened in 1931." in kept
    assert len(tok(kept, add_special_tokens=False)["input_ids"]) <= 120
    assert "Sentence 149" in kept and "Sentence 150" in kept  # whole sentences on both sides of the match
    assert notice.startswith("The passage is ") and "best match for the question" in notice
    start, _ = fit_context(tok, context, "Zebra?", 120)  # nothing matches: the start of the passage
    assert start.startswith("Sentence 0 is about")
