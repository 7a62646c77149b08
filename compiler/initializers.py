"""The initialiser catalog: `init { linear.weight = uniform(-0.1, 0.1) }`, and `param` distributions.

Each entry names the torch.nn.init function that fills a tensor in place when the model is built
(compiler/build.py `initialise`); nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .values import Arg, non_negative, positive


@dataclass(frozen=True)
class Initializer:
    name: str
    doc: str
    torch_fn: str
    args: list[Arg] = field(default_factory=list)
    needs_matrix: bool = False        # only for tensors of two or more dims

    @property
    def positional(self) -> bool:
        """uniform and normal take their arguments positionally (and a generator) in torch.nn.init."""
        return self.name in ("uniform", "normal")


INITIALIZERS: dict[str, Initializer] = {}


def register(i: Initializer) -> None:
    INITIALIZERS[i.name] = i


register(Initializer("uniform", "Uniform on [low, high).", "uniform_", [Arg("low", "float", -1.0), Arg("high", "float", 1.0)]))
register(Initializer("normal", "Normal with mean and std.", "normal_",
                     [Arg("mean", "float", 0.0), Arg("std", "float", 1.0, check=positive)]))
register(Initializer("constant", "Every value the same.", "constant_", [Arg("val", "float")]))
register(Initializer("zeros", "All zeros.", "zeros_"))
register(Initializer("ones", "All ones.", "ones_"))
register(Initializer("xavier_uniform", "Glorot uniform.", "xavier_uniform_", [Arg("gain", "float", 1.0, check=positive)], True))
register(Initializer("xavier_normal", "Glorot normal.", "xavier_normal_", [Arg("gain", "float", 1.0, check=positive)], True))
register(Initializer("kaiming_uniform", "He uniform.", "kaiming_uniform_", [Arg("a", "float", 0.0, check=non_negative)], True))
register(Initializer("kaiming_normal", "He normal.", "kaiming_normal_", [Arg("a", "float", 0.0, check=non_negative)], True))
register(Initializer("orthogonal", "A (semi-)orthogonal matrix.", "orthogonal_", [Arg("gain", "float", 1.0, check=positive)], True))
