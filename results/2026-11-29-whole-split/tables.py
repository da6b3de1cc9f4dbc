"""Markdown tables for the README and STUDY.md from runs/full/{eval,val-a,val-b,chosen}.json."""
import json
from pathlib import Path

from laffi.report import cell

R = Path("runs/full")
ev = json.loads((R / "eval.json").read_text())
chosen = json.loads((R / "chosen.json").read_text())
val = {**json.loads((R / "val-a.json").read_text()), **json.loads((R / "val-b.json").read_text())}
names = {chosen["sft"]: "sft", chosen["laffi"]: "laffi"}
cols = [("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns EM", "NoAns_exact"), ("abstain %", "abstain"),
        ("span HasAns F1", "span_HasAns_f1"), ("answerability AUC", "auc"), ("best F1 (optimistic)", "best_f1")]
print("| variant | answer | " + " | ".join(c for c, _ in cols) + " |")
print("|---" * (len(cols) + 2) + "|")
for v in ["always no answer", "base", chosen["sft"], chosen["laffi"]]:
    m = ev["variants"][v]
    print(f"| {names.get(v, v)} | {m.get('answer_path', 'direct')} | " + " | ".join(cell(m, k) for _, k in cols) + " |")
print()
for c in ev["comparisons"]:
    print(f"- {names.get(c['a'], c['a'])} − {names.get(c['b'], c['b'])}: {c['metric']} {c['diff']:+.1f} "
          f"[{c['lo']:+.1f}, {c['hi']:+.1f}] ({c['verdict']})")
print()
print("| variant (validation, 200 questions) | na_prob from | threshold | F1 at it | abstain % | AUC |")
print("|---|---|---|---|---|---|")
for v, c in val.items():
    print(f"| {v} | {c['na_prob']} | {c['threshold']:.4f} | {c['validation']['f1']:.1f} | "
          f"{c['validation']['abstain']:.1f} | {c['validation']['auc']} |")
