"""The four evaluation articles (run.sh: one folder each under runs/eval-1596) pooled into one evaluation of the
shipped pair on all their questions: summary.json (what the app's Results view and the README read), results.md,
the figure as f1.png and, once every article is in, each shipped adapter's self_feedback.json (the Ask caveat).
Usage (repository root): PYTHONPATH=. .venv/bin/python results/2026-12-03-eval-1596/pool.py"""

import sys
from pathlib import Path

from laffi.adapter_folder import SELF_FEEDBACK, AdapterFolder
from laffi.evaluation.pooled import pool_folders, self_feedback_record
from laffi.evaluation.published import (EVALUATION, SHOWN, answer_paths, difference_rows, policy_figure, policy_rows,
                                        reading, save_png)
from laffi.io import write_json_atomic, write_text_atomic
from laffi.squad.data import dataset_record
from laffi.settings import DEFAULT_SQUAD

ARTICLES = ["Normans", "Steam_engine", "Immune_system", "Warsaw"]
HERE = Path(__file__).parent
runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/eval-1596")
out = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE
done = [a for a in ARTICLES if (runs / a / "metrics.json").is_file()]
pooled = pool_folders([runs / a for a in done], compare=[("laffi", "sft")])
pooled.pop("per_question")
summary = {"kind": EVALUATION, "title": f"The shipped adapters on every question of {len(done)} evaluation articles",
           "split": "eval", "articles": done, "complete": done == ARTICLES, "data": dataset_record(DEFAULT_SQUAD),
           "thresholds": "shipped: each adapter's calibration.json, chosen on the validation article",
           **pooled}
write_json_atomic(out / "summary.json", summary)
head = ["policy", *(t for t, _ in SHOWN)]
lines = [f"# {summary['title']}", "", f"{pooled['n']} questions ({', '.join(done)}); [low, high] = 95 % bootstrap "
         "interval over questions.", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in policy_rows(summary)]
lines += ["", f"How each answers: {answer_paths(summary)}."]
lines += ["", "| comparison | metric | difference | 95 % interval | reading |", "|---|---|---|---|---|"]
lines += ["| " + " | ".join(row) + " |" for row in difference_rows(summary)]
lines += ["", reading(summary), ""]
write_text_atomic(out / "results.md", "\n".join(lines))
save_png(policy_figure(summary), out / "f1.png")
if summary["complete"] and out == HERE:  # the shipped adapters' caveat: their verdicts on the most questions
    for v in ("sft", "laffi"):
        record = self_feedback_record(pooled, v, "eval", f"results/{HERE.name}")
        if record is not None:
            AdapterFolder(Path("adapters") / v).write(SELF_FEEDBACK, record)
print("\n".join(lines))
