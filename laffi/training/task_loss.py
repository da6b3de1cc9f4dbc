"""Per-task loss averaging for `laffi+sft`: each step's loss is alpha x (the SFT rows' mean token loss) + (1 - alpha)
x (the LaFFi rows' mean token loss), instead of one mean over every completion token.

Usage:
    TrainConfig(method="laffi+sft", task_weight=0.5)             # train_adapter then trains with TaskWeightedTrainer
    loss = task_weighted_loss(logits, labels, task_ids, alpha)  # task_ids: 0 SFT, 1 LaFFi, -1 no label

Why: one token mean lets the longer targets decide. A feedback sentence is ~25 tokens and a SQuAD answer ~4, so
in a step with as many rows of each kind LaFFi's rows carry ~85 % of the gradient and SFT's answering skill gets
the rest. Distilling step-by-step (Hsieh et al. 2023: rationale + label multi-task training that helps a 220M T5)
averages each task's loss separately and mixes them with a weight; this is that, for answer + feedback. Rows are
packed so that a step holds both kinds of rows of the same passages (laffi.training.packing, order_key); a step with
one kind alone gives that kind's mean (the weights of the tasks present are renormalised).
"""

from __future__ import annotations

from trl import SFTTrainer

SFT_TASK, LAFFI_TASK = 0, 1


def task_weighted_loss(logits, labels, task_ids, alpha: float):
    """alpha x mean loss over SFT label tokens + (1 - alpha) x mean over LaFFi label tokens (next-token shifted:
    the logit at t predicts labels[t + 1]); the weights of the tasks present in the batch sum to 1."""
    import torch

    targets, tasks = labels[:, 1:], task_ids[:, 1:]
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets,
                                                  ignore_index=-100, reduction="none")
    terms, weights = [], []
    for task, weight in ((SFT_TASK, alpha), (LAFFI_TASK, 1.0 - alpha)):
        mask = (tasks == task) & (targets != -100)
        if mask.any():
            terms.append(per_token[mask].mean())
            weights.append(weight)
    if not terms:
        return per_token.sum() * 0.0  # no label token: a zero that still has a graph
    return sum(w * t for w, t in zip(weights, terms)) / sum(weights)


class TaskWeightedTrainer(SFTTrainer):
    """SFTTrainer whose loss is task_weighted_loss where a batch carries task_ids (else TRL's own loss)."""

    def __init__(self, *args, task_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_weight = task_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        tasks = inputs.pop("task_ids", None)
        if tasks is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs, use_cache=False)
        loss = task_weighted_loss(outputs.logits, labels, tasks, self.task_weight)
        return (loss, outputs) if return_outputs else loss
