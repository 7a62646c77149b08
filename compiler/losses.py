"""The loss catalog: built-in losses, used as `loss = mse` or called in a loss expression.

`target` says what the loss compares the output with: "same" (a tensor of the
output's shape) or "class" (integer class indices, the output holding one score
per class on its last axis). `functional` names the torch.nn.functional loss that
compiler/torch_backend.py `loss_function` calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .values import Arg, non_negative


@dataclass(frozen=True)
class Loss:
    name: str
    doc: str
    target: str                       # "same" | "class"
    functional: str                   # name in torch.nn.functional
    args: list[Arg] = field(default_factory=list)


LOSSES: dict[str, Loss] = {}


def register(loss: Loss) -> None:
    LOSSES[loss.name] = loss


register(Loss("mse", "Mean squared error.", "same", "mse_loss"))
register(Loss("l1", "Mean absolute error.", "same", "l1_loss"))
register(Loss("smooth_l1", "Huber-like: squared below beta, absolute above.", "same", "smooth_l1_loss",
              [Arg("beta", "float", 1.0, check=non_negative)]))
register(Loss("cross_entropy", "Softmax cross-entropy of class scores against class indices.", "class", "cross_entropy",
              [Arg("label_smoothing", "float", 0.0, check=non_negative)]))
register(Loss("nll", "Negative log-likelihood of log-probabilities against class indices.", "class", "nll_loss"))
register(Loss("bce", "Binary cross-entropy of probabilities in [0, 1].", "same", "binary_cross_entropy"))
register(Loss("bce_with_logits", "Binary cross-entropy of raw scores (sigmoid inside).", "same",
              "binary_cross_entropy_with_logits"))
