"""After laffi-712 is calibrated: the variant (verify or direct) chosen on validation F1, scored once on the 200
evaluation-article questions every earlier row used; paired differences against the shipped sft and the shipped
laffi on the same questions (their per-question scores from runs/full/eval)."""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, "/work/snap3")
from laffi.evaluation.stats import paired_diff_ci, verdict  # noqa: E402

PY, D = "/work/main/.venv/bin/python", "/work/shared/data/squad_v2/dev-12-articles.json"
A, O, OLD = Path("/work/main/runs/full/adapters"), Path("/work/main/runs/full3"), Path("/work/main/runs/full/eval")
val = json.loads((O / "val.json").read_text())
best = max(("laffi-712", "laffi-712-direct"), key=lambda v: val[v]["validation"]["f1"])
print("validation:", {v: val[v]["validation"] for v in val}, "chosen:", best, flush=True)
with open(O / "eval.log", "w") as err:
    out = subprocess.run([PY, "-m", "laffi", "eval", "--data", D, "--articles", "eval", "--limit", "200", "--seed", "0",
                          "--adapters_dir", str(A), "--variants", best, "--out", str(O / "eval"), "--json"],
                         cwd="/work/snap3", stdout=subprocess.PIPE, stderr=err, text=True, check=True).stdout
(O / "eval.json").write_text(out)
ev = json.loads(out)


def scores(path):
    return {r["qid"]: r["f1"] for r in map(json.loads, path.read_text().splitlines())}


new = scores(O / "eval" / best / "examples.jsonl")
summary = {"chosen": best, "validation": val[best]["validation"], "eval": ev["variants"][best],
           "always_no_answer": ev["variants"].get("always no answer"), "comparisons": ev.get("comparisons", [])}
for name, folder in (("sft (shipped)", "sft-full-rank"), ("laffi (shipped)", "laffi-full-direct")):
    old = scores(OLD / folder / "examples.jsonl")
    qids = sorted(new)
    assert set(qids) == set(old), "not the same questions"
    scale = 100.0 if max(max(new.values()), max(old.values())) <= 1.0 else 1.0
    d, lo, hi = paired_diff_ci([new[q] * scale for q in qids], [old[q] * scale for q in qids])
    summary["comparisons"].append({"a": best, "b": name, "metric": "f1", "diff": round(d, 2), "lo": round(lo, 2),
                                   "hi": round(hi, 2), "verdict": verdict(d, lo, hi)})
(O / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps({k: summary[k] for k in ("chosen", "validation", "comparisons")}, indent=1))
print("eval F1", round(summary["eval"]["f1"], 1), summary["eval"]["ci"]["f1"], "abstain", summary["eval"]["abstain"],
      "AUC", summary["eval"].get("auc"), "span HasAns", summary["eval"].get("span_HasAns_f1"))
