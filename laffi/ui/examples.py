"""Passages and questions written for this demo (not from SQuAD): the Ask tab's examples, and the warm-up.

Usage:
    gr.Examples(EXAMPLES, inputs=[context, question])
    answer_questions(lm, [WARM_UP], lm.variants)   # at start-up: first-call costs paid, the example passage kept

The warm-up asks about the first example's passage (a question no example asks), so that the model's prefix cache
(laffi.inference.prefix_cache) holds it under every variant: the first Ask on it computes only its question.
"""

# Some questions cannot be answered from their passage.
LIGHTHOUSE = ("The Halvard lighthouse stands on a granite islet two kilometres off the town of Nesby. It was lit in "
              "1874, and its lamp was converted from paraffin to electricity in 1952. The keeper's cottage is now a "
              "small museum about the fishing families of the coast.")
NOVELIST = ("Marisol Ortega trained as a chemist before she began writing crime novels. Her first book, The Salt "
            "Ledger, sold poorly, but her third, Nine Quiet Rooms, won the Arden Prize in 2011 and was translated "
            "into fourteen languages.")
MOSS = ("Glacier mice are balls of moss that roll slowly across some glaciers. Researchers who tagged them found "
        "that the herd of moss balls moved about 2.5 centimetres a day, changing direction together over weeks.")
EXAMPLES = [
    [LIGHTHOUSE, "When was the lighthouse converted to electricity?"],
    [LIGHTHOUSE, "Who was the first keeper of the lighthouse?"],  # unanswerable
    [NOVELIST, "Which of Ortega's books won the Arden Prize?"],
    [NOVELIST, "How many languages was The Salt Ledger translated into?"],  # unanswerable: that was her third book
    [MOSS, "How far do glacier mice move in a day?"],
]
WARM_UP = (LIGHTHOUSE, "When was the lighthouse lit?")
