"""Training: LoRA adapters with TRL's SFTTrainer on one process or many.

    trainer       stage 3: TrainConfig, train_adapter -> TrainResult
    rows          the training rows (sft, laffi, laffi+sft) and the held-out share
    preflight     settings a run can't use, refused before any real work
    packing       a passage computed once for every question a step asks about it
    task_loss     laffi+sft with each task's loss averaged on its own and weighted (task_weight)
    cpu_steps     a CPU step without needless work: the loss head on labelled positions, no LoRA input casts
    distributed   `accelerate launch` on N processes, the batch plan, the one Stop callback
    logs          the per-step loss log and the adapter's model card
"""
