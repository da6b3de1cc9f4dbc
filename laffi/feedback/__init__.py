"""Feedback: drafts to judge, natural-language feedback on them from AI and human annotators, and the store the
app collects people's feedback in (SQLite, mirrored to a Hub dataset on a Space).

    annotation   stage 2: feedback on (question, answer, gold) from mixable annotators; feedback rows as training rows
    drafts       the model's own answer plus synthetic drafts, so every verdict is learned
    store        the durable SQLite store of feedback events, CSV/JSONL import, withdrawal
    hub_sync     every stored row also in a private Hub dataset (a Space's disk does not survive a restart)
    agreement    the verdicts variants predicted on their own answers scored against the participants' ratings
"""
