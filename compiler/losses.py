"""The loss catalog: built-in losses, used as `loss = mse` or called in a loss expression.

`target` says what the loss compares the output with: "same" (a tensor of the
output's shape) or "class" (an integer class index per sample, the output
holding one score per class). The builder returns torch.nn.functional's loss.
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

    def build(self, args: dict):
        import torch.nn.functional as F
        fn = getattr(F, self.functional)
        kwargs = {k: v for k, v in args.items() if not k.startswith("__")}
        if self.target == "same":
            return lambda output, target: fn(output, target.reshape(output.shape).to(output.dtype), **kwargs)
        return lambda output, target: fn(output, target.long(), **kwargs)


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
