"""SQuAD v2 as an `evaluate` metric module that loads offline: the same inputs and outputs as the Hub's `squad_v2`
metric, computed by laffi.squad.metric (the official evaluate-v2.0.py rules, with its --na-prob-file step).

Usage:
    import evaluate
    from laffi.squad.metric import METRIC_PATH
    squad_v2 = evaluate.load(METRIC_PATH)        # a local script: no hub needed
    squad_v2.compute(predictions=[{"id": "q1", "prediction_text": "1931", "no_answer_probability": 0.1}],
                     references=[{"id": "q1", "answers": {"text": ["1931"], "answer_start": [27]}}])
    # {"exact": 100.0, "f1": 100.0, "total": 1, "HasAns_exact": ..., "best_f1": ..., "best_f1_thresh": ...}

Why a module of our own: the Hub's `squad_v2` is fetched from the Hub when loaded, which a machine without it
(a laptop offline, CI here) cannot do; this one gives the same numbers (tests/test_squad_metric.py compares them
where the Hub is reachable).
"""

import datasets
import evaluate

from laffi.squad.metric import squad_v2_scores

_DESCRIPTION = "SQuAD v2 exact match and F1 (official rules), with the no-answer threshold step."
_KWARGS = """predictions: [{"id", "prediction_text", "no_answer_probability"}]; references: [{"id", "answers":
{"text": [...], "answer_start": [...]}}]; no_answer_threshold: float (default 1.0): a prediction whose
no_answer_probability is above it counts as "no answer"."""


class LaffiSquadV2(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="Rajpurkar, Jia and Liang (2018)", inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string"),
                                "no_answer_probability": datasets.Value("float32")},
                "references": {"id": datasets.Value("string"), "answers": datasets.features.Sequence(
                    {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")})}}))

    def _compute(self, predictions, references, no_answer_threshold=1.0):
        from types import SimpleNamespace

        examples = [SimpleNamespace(qid=r["id"], answers=list(r["answers"]["text"])) for r in references]
        preds = {p["id"]: p["prediction_text"] for p in predictions}
        na_probs = {p["id"]: float(p["no_answer_probability"]) for p in predictions}
        out = squad_v2_scores(examples, preds, na_probs=na_probs, na_prob_thresh=no_answer_threshold)
        keep = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
                "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")
        return {k: out[k] for k in keep if k in out}
