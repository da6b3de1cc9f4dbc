"""Evaluation: answer SQuAD v2 questions with several variants, score them with the official metric, and show the
numbers with intervals, the abstain rate and the always-"no answer" policy beside them.

    evaluate   evaluate_variants and calibrate_variants (predictions, na_probs, thresholds chosen on validation)
    stats      bootstrap intervals, paired differences, balanced verdict accuracy
    report     the tables people read
"""
