#!/bin/bash
# The shipped pair (sft, laffi) on every question of the four evaluation articles (1,596), one article at a time so
# that a killed run resumes at the next article; each variant also predicts feedback on its own answer (verdict
# accuracy). Thresholds: the shipped ones (calibration.json, chosen on the validation article). Per-question
# outputs stay in runs/ (they hold the dataset's text); pool.py turns them into the committed numbers.
# Usage: bash results/2026-12-03-eval-1596/run.sh   (from the repository root; run alone on the cores)
set -e
PY=${PY:-.venv/bin/python}
D=${D:-../shared/data/squad_v2/dev-12-articles.json}
O=runs/eval-1596
mkdir -p $O
for a in Normans Steam_engine Immune_system Warsaw; do
  [ -f $O/$a/metrics.json ] && continue
  rm -rf $O/$a.partial
  /usr/bin/time -v $PY -m laffi eval --data $D --articles $a --variants sft,laffi --feedback \
    --compare laffi:sft --out $O/$a.partial --json > $O/$a.json 2> $O/$a.log
  mv $O/$a.partial $O/$a
  echo "$a done $(date -u +%FT%TZ)"
done
