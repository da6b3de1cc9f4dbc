#!/bin/bash
# LaFFi (laffi+sft) at SFT's length: every training row once (712 steps of 8), then its answer path and threshold
# chosen on 200 validation questions, then one evaluation on 200 evaluation-article questions beside the shipped SFT.
set -e
cd /work/snap3
PY=/work/main/.venv/bin/python
A=/work/main/runs/full/adapters
O=/work/main/runs/full3
D=/work/shared/data/squad_v2/dev-12-articles.json
$PY -m laffi train --method laffi+sft --name laffi-712 --data /work/main/runs/full/data/synthetic-k1.jsonl \
  --batch_size 8 --heldout 0 --save_steps 50 --adapters_dir $A --work_dir /work/main/runs/full/train/laffi-712 \
  > $O/train.log 2>&1
rm -rf $A/laffi-712-direct && mkdir $A/laffi-712-direct
cp $A/laffi-712/adapter_config.json $A/laffi-712/adapter_model.safetensors $A/laffi-712/training_config.json $A/laffi-712-direct/
echo '{"kind": "direct", "draft_by": "self"}' > $A/laffi-712-direct/answer_path.json
echo '{"kind": "verify", "draft_by": "base"}' > $A/laffi-712/answer_path.json
$PY -m laffi calibrate --data $D --articles validation --limit 200 --seed 0 --adapters_dir $A \
  --variants laffi-712,laffi-712-direct --out $O/val --json > $O/val.json 2> $O/val.log
echo calibrated
