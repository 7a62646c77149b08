"""The optimizer catalog: `optimizer = adam(lr=0.001)`; each entry names its torch.optim class
(constructed by compiler/build.py `build_optimizer`; nothing here imports torch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .values import Arg, non_negative, positive, probability


def _none(args: dict) -> int:
    return 0


@dataclass(frozen=True)
class Optimizer:
    name: str
    torch_class: str
    args: list[Arg] = field(default_factory=list)
    state: Callable[[dict], int] = _none      # float32 copies of each parameter it keeps (Adam's two moments: 2)


OPTIMIZERS: dict[str, Optimizer] = {}


def register(opt: Optimizer) -> None:
    OPTIMIZERS[opt.name] = opt


def _betas(v):
    return None if len(v) == 2 and all(0 <= b < 1 for b in v) else "must be two numbers in [0, 1)"


_WD = Arg("weight_decay", "float", 0.0, check=non_negative)
register(Optimizer("sgd", "SGD", [Arg("lr", "float", check=positive), Arg("momentum", "float", 0.0, check=non_negative),
                                  Arg("nesterov", "bool", False), Arg("dampening", "float", 0.0, check=non_negative), _WD],
                   state=lambda a: 1 if a.get("momentum") else 0))
register(Optimizer("adam", "Adam", [Arg("lr", "float", 1e-3, check=positive), Arg("betas", "floats", [0.9, 0.999], check=_betas),
                                    Arg("eps", "float", 1e-8, check=positive), _WD, Arg("amsgrad", "bool", False)],
                   state=lambda a: 3 if a.get("amsgrad") else 2))
register(Optimizer("adamw", "AdamW", [Arg("lr", "float", 1e-3, check=positive), Arg("betas", "floats", [0.9, 0.999], check=_betas),
                                      Arg("eps", "float", 1e-8, check=positive),
                                      Arg("weight_decay", "float", 0.01, check=non_negative), Arg("amsgrad", "bool", False)],
                   state=lambda a: 3 if a.get("amsgrad") else 2))
register(Optimizer("adadelta", "Adadelta", [Arg("lr", "float", 1.0, check=positive), Arg("rho", "float", 0.9, check=probability),
                                            Arg("eps", "float", 1e-6, check=positive), _WD],
                   state=lambda a: 2))
register(Optimizer("adagrad", "Adagrad", [Arg("lr", "float", 1e-2, check=positive), _WD], state=lambda a: 1))
register(Optimizer("rmsprop", "RMSprop", [Arg("lr", "float", 1e-2, check=positive), Arg("alpha", "float", 0.99, check=probability),
                                          Arg("momentum", "float", 0.0, check=non_negative), _WD],
                   state=lambda a: 2 if a.get("momentum") else 1))
