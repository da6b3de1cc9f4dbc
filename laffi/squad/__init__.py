"""SQuAD 2.0: the questions (file or dataset id, split by article) and the official metric (evaluate-v2.0.py rules,
also as an offline `evaluate` module).

    data             load, sample deterministically, split by article title
    combine          another file's articles added to the training ones, balanced to their unanswerable share
    metric           exact match, F1, no-answer thresholds, as the official script computes them
    laffi_squad_v2   the same scorer as an `evaluate` metric module (evaluate.load(metric.METRIC_PATH))
"""
