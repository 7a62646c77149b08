"""How much the dslc training loop costs over a hand-written one, and over the seed's DataLoader style.

For each model, in one process, on the same module (built with the same seed),
the same in-memory data and the same batch size:

    dslc      Trainer._epoch(): the loop `dslc train` runs (forward, loss, backward,
              step, the detached loss kept, the periodic-event check, log lines and
              checkpoints as the spec asks), without the per-epoch test evaluation
    hand      a plain PyTorch loop: randperm, index, forward, loss, backward, step, on the module
              as dslc trains it (runtime/training/convolutions.py: channels_last, pooling before
              ReLU), so dslc/hand is the loop's own overhead
    plain     the same hand loop on the module as built (PyTorch's defaults: NCHW, ReLU then
              pooling): plain/dslc is what the convolution work gains
    seed      the seed's style: torchvision MNIST + ToTensor + DataLoader, module as built
              (image models only)

Epochs alternate between the loops; the fastest round of each is reported (the machine may be
shared: the minimum is the run least disturbed by other work).
Targets: dslc / hand <= 1.02; seed / dslc >= 1.5. Prints a table; not a test.

    OMP_NUM_THREADS=1 python bench/train_overhead.py [--rounds 5] [--threads 1] [--data-root DIR] [--models cnn_mnist,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist5k"
MODELS = {"cnn_mnist": (1, 1), "cnn_batchnorm": (1, 1), "lstm_mnist": (1, 1), "thermometer": (200, 6)}  # model -> (epochs per block, rounds x)


def setup(name: str, data_root: str | None):
    from dslc.runtime.data.dataset import load_data
    from dslc.runtime.training.run_dir import check_configuration, read_spec_text
    path = ROOT / "specs" / f"{name}.dlspec"
    spec, source = read_spec_text(path.read_text(), str(path))
    variant = spec.variants[0].name if spec.variants else None
    checked = check_configuration(spec, source, [], variant)
    data = load_data(checked, data_root=data_root if checked.data.source.name == "mnist" else None)
    return checked, data


def dslc_module(epoch):
    return epoch.__self__.module


def dslc_runner(checked, data, folder):
    from dslc.runtime.training.loop import Trainer
    from dslc.runtime.training.progress import Progress
    trainer = Trainer(checked, data, Path(folder), spec_hash="bench", device=torch.device("cpu"), progress=Progress("quiet"))
    trainer.total_steps = trainer.total_epochs = 10**9         # never "the end"
    trainer.evaluating = False                                 # time training only, as the hand loop does
    trainer._plan()
    return trainer._epoch


def hand_runner(checked, data, tuned: bool = True):
    """The loop a person writes: same module kind and seed, same optimizer, same batches; `tuned`: the
    module with dslc's convolution speed-ups (what dslc trains), else as built."""
    from dslc.compiler.build import build_model, build_optimizer
    from dslc.runtime.training.convolutions import speed_up
    from dslc.runtime.training.loop import seed_everything
    seed_everything(checked.train.seed)
    model = build_model(checked.model, checked.init)
    if tuned:
        speed_up(model, checked.model, torch.device("cpu"))
    opt = build_optimizer(checked.train.optimizer, model.parameters())
    x, y = data.train.inputs[0], data.train.targets[0]
    n, bs, shuffle = len(x), checked.data.batch or len(x), checked.data.shuffle
    classify = any(c.name == "cross_entropy" for c in checked.train.loss.calls())
    g = torch.Generator().manual_seed(0)

    def epoch():
        model.train()
        if not shuffle and bs >= n:
            out = model(x)
            loss = F.cross_entropy(out, y) if classify else ((out - y) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return
        perm = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            out = model(x[idx])
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epoch


def seed_runner(checked, data_root):
    """The seed's recipes: torchvision's MNIST dataset, ToTensor, a shuffling DataLoader."""
    from torchvision import datasets, transforms

    from dslc.compiler.build import build_model, build_optimizer
    dataset = datasets.MNIST(data_root, train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=checked.data.batch, shuffle=True)
    torch.manual_seed(checked.train.seed)
    model = build_model(checked.model, checked.init)
    opt = build_optimizer(checked.train.optimizer, model.parameters())
    shape = (-1, *next(iter(checked.model.inputs.values())).dims)

    def epoch():
        model.train()
        for images, labels in loader:
            out = model(images.reshape(shape))
            loss = F.cross_entropy(out, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epoch


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def timed(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="timing rounds per loop (the fastest is reported)")
    p.add_argument("--data-root", default=str(DEFAULT_DATA))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = _load()
    rows = []
    for name in args.models.split(","):
        checked, data = setup(name, args.data_root)
        block, more = MODELS.get(name, (1, 1))
        with tempfile.TemporaryDirectory() as folder:
            loops = {"dslc": dslc_runner(checked, data, folder), "hand": hand_runner(checked, data)}
            if any(isinstance(m, torch.nn.Conv2d) for m in dslc_module(loops["dslc"]).modules()):
                loops["plain"] = hand_runner(checked, data, tuned=False)
            if checked.data.source.name == "mnist":
                loops["seed"] = seed_runner(checked, args.data_root)
            for fn in loops.values():                      # warm-up
                timed(fn, 1)
            times = {k: [] for k in loops}
            for _ in range(args.rounds * more):
                for k, fn in loops.items():
                    times[k].append(timed(fn, block))
        med = {k: min(v) for k, v in times.items()}
        rows.append((name, med["dslc"], med["hand"], med.get("plain"), med.get("seed")))
        print(f"{name}: done", file=sys.stderr)
    print(f"{'model':<12} {'dslc s/epoch':>13} {'hand s/epoch':>13} {'dslc/hand':>10} {'plain s/epoch':>14} "
          f"{'plain/dslc':>11} {'seed s/epoch':>13} {'seed/dslc':>10}")
    for name, d, h, p, s in rows:
        plain_cols = f"{p:>14.4f} {p / d:>10.2f}x" if p else f"{'-':>14} {'-':>11}"
        seed_cols = f"{s:>13.4f} {s / d:>9.2f}x" if s else f"{'-':>13} {'-':>10}"
        print(f"{name:<12} {d:>13.6f} {h:>13.6f} {d / h:>10.3f} {plain_cols} {seed_cols}")
    print("targets: dslc/hand <= 1.02, seed/dslc >= 1.5 (epoch = one pass over the training split; "
          "thermometer: one full-batch step); plain: the hand loop on the module as built (NCHW)")
    print(f"threads: {torch.get_num_threads()}, rounds: {args.rounds} (fastest reported), load average "
          f"before/after: {load_before} / {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
