"""Evaluation: answer SQuAD v2 questions with several variants, score them with the official metric, and show the
numbers with intervals, the abstain rate and the always-"no answer" policy beside them.

    evaluate   evaluate_variants and calibrate_variants (predictions, na_probs, thresholds chosen on validation)
    stats      bootstrap intervals, paired differences, balanced verdict accuracy
    report     the tables people read
    pooled     evaluations run article by article, scored as one run over all their questions
    published  the committed study (results/*/summary.json) as the Results tab and the README show it
    thresholds_view  the leave-one-article-out thresholds (results/*/thresholds.json) as tables
    study_view the trials that chose a recipe on the validation article (results/*/study.json) as tables
"""
