"""What an ejected train.py's main() calls: its options, the device, the run, the saved weights.

    args = options(CONFIG, "Train Cnn as specs/cnn_mnist.dlspec says.", data=("--data-root", DATA_ROOT))
    train(CONFIG, args, Cnn, load_data(args.data_root), compute_loss)

`train` seeds every generator, builds the model (so one seed gives dslc's
initial weights), runs `loop.Loop` and prints each log and evaluation line as
`dslc train` does, then the figures at the end (`done: ...`), and saves the
weights of the run's result (the best evaluation's, with a validation split)
as a plain state_dict.
"""

from __future__ import annotations

import argparse

import torch

from .loop import Loop, TrainConfig, describe
from .metrics import Metrics
from .seeding import seed_everything


def options(config: dict, description: str, data: tuple[str, str] | None = None) -> argparse.Namespace:
    """The command line: the data (`data`: its option and default), the run's length, seed, device and output."""
    parser = argparse.ArgumentParser(description=description)
    if data is not None:
        option, default = data
        parser.add_argument(option, default=default, help="the data file, or the folder holding the data "
                                                          "(default: where the spec points)")
    length = "steps" if config.get("steps") else "epochs"
    parser.add_argument(f"--{length}", type=int, default=config[length], help=f"how many {length} to train")
    parser.add_argument("--seed", type=int, default=config.get("seed", 0))
    parser.add_argument("--device", default=config.get("device", "auto"), help="cpu, cuda or auto")
    parser.add_argument("--out", default="model.pt", help="where to save the trained weights (a state_dict)")
    return parser.parse_args()


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(config: dict, args: argparse.Namespace, model_class, splits: dict, loss, operands=None) -> Loop:
    """Train model_class() on splits["train"] (evaluating "validation" and "test" when given) with
    `loss(model, output, inputs, targets)`; `operands(output, targets) -> (output, target)` is what the
    metrics compare. Returns the finished loop."""
    settings = {**config, "seed": args.seed, "device": args.device}
    if getattr(args, "steps", None) is not None:
        settings.update(steps=args.steps, epochs=None)
    elif getattr(args, "epochs", None) is not None:
        settings.update(epochs=args.epochs, steps=None)
    c = TrainConfig(**settings)
    device = pick_device(c.device)
    seed_everything(c.seed, c.deterministic)
    model = model_class().to(device)
    loop = Loop(c, model, lambda output, inputs, targets: loss(model, output, inputs, targets), splits["train"],
                splits.get("validation"), splits.get("test"), Metrics.of(c.metrics, operands), device)
    if c.precision != "fp32" and loop.precision == "fp32":
        print(f"precision {c.precision} needs CUDA; training in fp32 on {device}", flush=True)
    print(f"training {loop.total_steps} steps", flush=True)
    outcome = loop.run()
    print("done: " + "  ".join(f"{k} {v:.6g}" for k, v in outcome["final_metrics"].items() if v is not None),
          flush=True)
    selection = outcome["selection"]
    if selection["rule"] == "best":
        torch.save(loop.best_state, args.out)
        best = describe({"epoch": selection["epoch"], "step": selection["step"], **outcome["metrics"]})
        print(f"weights saved to {args.out}: the best evaluation by {selection['metric']} ({best})", flush=True)
    else:
        torch.save(loop.module.state_dict(), args.out)
        print(f"weights saved to {args.out}: the last step's", flush=True)
    return loop
