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
    return labelled_task_loss(logits[labelled_positions(labels)], *labelled_targets(labels, task_ids), alpha)


def labelled_positions(labels):
    """The positions whose logit predicts a label (labels[t + 1] set): the only ones the output layer must
    project, as logits_to_keep (the 49k-word output layer on every position of a packed row costs a third of a
    step on a CPU). TRL's fused head, which does the same for the pooled loss (laffi.training.cpu_steps), returns
    one mean over every token, and this loss needs each task's tokens apart."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def labelled_targets(labels, task_ids):
    """(targets, tasks) of the labelled positions, in labelled_positions' order: what the logit at t predicts."""
    keep = labelled_positions(labels)[:, :-1]
    return labels[:, 1:][keep], task_ids[:, 1:][keep]


def labelled_task_loss(logits, targets, tasks, alpha: float):
    """task_weighted_loss on the labelled positions only: logits (n, vocab), targets and tasks (n,)."""
    import torch

    per_token = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    terms, weights = [], []
    for task, weight in ((SFT_TASK, alpha), (LAFFI_TASK, 1.0 - alpha)):
        mask = tasks == task
        if mask.any():
            terms.append(per_token[mask].mean())
            weights.append(weight)
    if not terms:
        return logits.sum() * 0.0  # no label token: a zero that still has a graph
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
        # Only the labelled positions go through the output layer (a boolean logits_to_keep: flattened logits).
        outputs = model(**inputs, use_cache=False, logits_to_keep=labelled_positions(labels))
        loss = labelled_task_loss(outputs.logits.reshape(-1, outputs.logits.shape[-1]),
                                  *labelled_targets(labels, tasks), self.task_weight)
        return (loss, outputs) if return_outputs else loss
