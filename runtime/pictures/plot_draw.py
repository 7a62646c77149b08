"""How each plot kind is drawn: one function per entry of the plot catalog.

Every function takes a matplotlib Figure (fixed size, constrained layout) and
the trained configurations it shows (`plots.Config`: name, summary, facts,
and lazily the trained module and the data), and fills the figure. Which
function applies to a run is the catalog's business, not this module's.
torch is imported inside the functions that run the model.
"""

from __future__ import annotations

import math

import numpy as np

from dslc.runtime.pictures.plot_curves import draw_curves as _draw_curve_panels
from dslc.runtime.pictures.plot_curves import read_history

MAX_POINTS = 2000          # samples in scatter plots
GRID = (4, 8)              # rows, columns of the predictions grid
RECON_COLUMNS = 10


# ---------------------------------------------------------------- running the model


def outputs_of(module, inputs: list, batch: int = 512, hook_path: str | None = None):
    """The model's outputs (a list, one array per output) over whole tensors, in eval mode, batched;
    with `hook_path`, also the input that module received (the last hidden layer), as an array."""
    import torch
    module.eval()
    module.reset_state()
    captured: list = []
    handle = None
    if hook_path is not None:
        handle = module.get_submodule(hook_path).register_forward_hook(
            lambda m, args, out: captured.append(args[0].detach().float().cpu()))
    chunks: list[list] = []
    n = int(inputs[0].shape[0])
    try:
        with torch.no_grad():
            for lo in range(0, n, batch):
                out = module(*[t[lo:lo + batch] for t in inputs])
                out = out if isinstance(out, tuple) else (out,)
                chunks.append([o.detach().float().cpu() for o in out])
    finally:
        if handle is not None:
            handle.remove()
    results = [torch.cat([c[i] for c in chunks]).numpy() for i in range(len(chunks[0]))]
    hidden = torch.cat(captured).numpy() if captured else None
    return results, hidden


def _subset(split, limit: int):
    """The first `limit` samples of a split's inputs and targets."""
    return [t[:limit] for t in split.inputs], [t[:limit] for t in split.targets]


def _labels(facts, n: int) -> list[str]:
    return list(facts.labels) if facts.labels and len(facts.labels) >= n else [str(i) for i in range(n)]


def _as_images(values: np.ndarray, shape: tuple) -> np.ndarray:
    """[N, ...] model inputs as [N, H, W] (grey) or [N, H, W, 3] (colour) for imshow."""
    images = values.reshape(len(values), *shape)
    if shape[0] == 1:
        return images[:, 0]
    images = images.transpose(0, 2, 3, 1)
    lo, hi = images.min(), images.max()
    return (images - lo) / (hi - lo) if hi > lo else images * 0


def _show(ax, image, vmin, vmax) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------- curves


def draw_curves(fig, configs) -> None:
    histories = [read_history(c.path, c.name, c.summary) for c in configs]
    if len(histories) == 1 and configs[0].name:
        histories[0].label = None
        title = f"{configs[0].spec_name} [{configs[0].name}]"
    else:
        title = configs[0].spec_name
    _draw_curve_panels(fig, histories, title)


# ---------------------------------------------------------------- regression: data and fitted curve


def draw_fit(fig, configs) -> None:
    """Train (filled) and held-out (hollow) points with each configuration's fitted curve y(x)."""
    # one x axis for all when the inputs are computed alike from the same data: overlay; else one panel each
    shared = len({(tuple(c.preprocessing.get("input_exprs") or []), (c.summary.get("data") or {}).get("fingerprint"))
                  for c in configs}) == 1
    axes = fig.subplots(1, 1 if shared else len(configs), squeeze=False)[0]
    import torch
    for k, cfg in enumerate(configs):
        ax = axes[0 if shared else k]
        if not shared or k == 0:
            grid = _data_points(ax, cfg)
        (pred,), _ = outputs_of(cfg.module(), [torch.from_numpy(grid).reshape(len(grid), *cfg.input_dims)])
        label = cfg.name or "model"
        loss = _final_loss(cfg.summary)
        ax.plot(grid, pred.reshape(-1), color=f"C{k % 10}", linewidth=2,
                label=f"{label} ({loss})" if loss else label)
        if not shared:
            ax.set_title(cfg.name or cfg.spec_name)
        ax.legend(fontsize="small")
    fig.suptitle(f"{configs[0].spec_name}: data and fitted curve" + ("s" if len(configs) > 1 else ""))


def _data_points(ax, cfg) -> np.ndarray:
    """Scatter the configuration's train and held-out points; returns a grid of x values spanning them."""
    data = cfg.data()
    held_name, held = cfg.held_out(data)
    xs = [data.train.inputs[0].reshape(-1).numpy()]
    ax.scatter(xs[0], data.train.targets[0].reshape(-1).numpy(), s=22, color="0.15", label="train", zorder=3)
    if held is not None:
        xs.append(held.inputs[0].reshape(-1).numpy())
        ax.scatter(xs[1], held.targets[0].reshape(-1).numpy(), s=26, facecolors="none", edgecolors="C3",
                   label=held_name, zorder=3)
    lo, hi = min(float(x.min()) for x in xs), max(float(x.max()) for x in xs)
    pad = 0.05 * (hi - lo or 1.0)
    ax.set_xlabel((cfg.preprocessing.get("input_exprs") or [cfg.input_name])[0])
    ax.set_ylabel(cfg.target_name)
    ax.grid(True, alpha=0.3)
    return np.linspace(lo - pad, hi + pad, 300, dtype=np.float32)


def _final_loss(summary: dict) -> str | None:
    metrics = summary.get("metrics") or {}
    for key in ("test_loss", "val_loss", "train_loss"):
        if isinstance(metrics.get(key), (int, float)):
            return f"{key.replace('_', ' ')} {metrics[key]:.4g}"
    return None


# ---------------------------------------------------------------- variants side by side


def draw_variant_losses(fig, configs) -> None:
    """Grouped bars: each configuration's final train / validation / test loss."""
    ax = fig.subplots()
    keys = [k for k in ("train_loss", "val_loss", "test_loss")
            if any(isinstance((c.summary.get("metrics") or {}).get(k), (int, float)) for c in configs)]
    width = 0.8 / max(len(keys), 1)
    values = []
    for j, key in enumerate(keys):
        for i, cfg in enumerate(configs):
            v = (cfg.summary.get("metrics") or {}).get(key)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            values.append(v)
            bar = ax.bar(i + (j - (len(keys) - 1) / 2) * width, v, width, color=f"C{j}",
                         label=key.replace("_", " ") if i == 0 else None)
            ax.bar_label(bar, labels=[f"{v:.3g}"], fontsize="small", padding=2)
    ax.set_xticks(range(len(configs)), [c.name or "run" for c in configs])
    ax.set_ylabel("final loss")
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{configs[0].spec_name}: final loss per variant")


# ---------------------------------------------------------------- classifiers


def _classified(cfg, limit: int | None = None):
    """(split name, inputs, scores, predicted, true, hidden) on the held-out split (else train).

    The model runs once per configuration (the final linear layer's input captured on the way); the
    confusion matrix, the predictions grid and the embedding share the result.
    """
    if "classified" not in cfg.cache:
        data = cfg.data()
        name, split = cfg.held_out_or_train(data)
        (scores,), hidden = outputs_of(cfg.module(), split.inputs, hook_path=cfg.facts.final_layer)
        cfg.cache["classified"] = (name, split, scores, hidden)
    name, split, scores, hidden = cfg.cache["classified"]
    n = split.n if limit is None else min(limit, split.n)
    true = split.targets[0][:n].reshape(-1).numpy()
    return (name, [t[:n] for t in split.inputs], scores[:n], scores[:n].argmax(axis=1), true,
            hidden[:n] if hidden is not None else None)


def draw_confusion(fig, configs) -> None:
    cfg = configs[0]
    name, _, scores, pred, true, _ = _classified(cfg)
    k = max(cfg.facts.classes or 0, scores.shape[1])
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    labels = _labels(cfg.facts, k)
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, shrink=0.85)
    ax.set_xticks(range(k), labels, rotation=45 if max(len(s) for s in labels) > 3 else 0)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        top = matrix.max() or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize="small" if k > 5 else "medium",
                        color="white" if matrix[i, j] > 0.55 * top else "0.1")
    accuracy = float((pred == true).mean()) if len(true) else float("nan")
    ax.set_title(f"{cfg.title}: {name} split, {len(true)} samples, accuracy {accuracy:.1%}")


def draw_predictions(fig, configs) -> None:
    """A grid of held-out images titled with predicted (and true) labels; mistakes in red, framed."""
    cfg = configs[0]
    rows, cols = GRID
    count = rows * cols
    name, inputs, _, pred, true, _ = _classified(cfg, limit=2000)
    wrong = np.flatnonzero(pred != true)
    shown = list(range(min(count, len(true))))
    extra = [int(i) for i in wrong if i >= len(shown)][:count // 4]      # make sure some mistakes are seen
    if extra:
        shown = shown[:len(shown) - len(extra)] + extra
    images = _as_images(inputs[0][shown].numpy(), cfg.facts.image_shape)
    vmin, vmax = float(images.min()), float(images.max())
    labels = _labels(cfg.facts, max(int(pred.max()), int(true.max())) + 1)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i, image in zip(axes.flat, shown, images):
        ax.set_axis_on()
        _show(ax, image, vmin, vmax)
        ok = pred[i] == true[i]
        ax.set_title(labels[pred[i]] if ok else f"{labels[pred[i]]} (true {labels[true[i]]})",
                     fontsize="small", color="0.1" if ok else "C3")
        for spine in ax.spines.values():
            spine.set_visible(not ok)
            spine.set_color("C3")
            spine.set_linewidth(2.5)
    fig.suptitle(f"{cfg.title}: predictions on the {name} split (wrong ones in red; "
                 f"{len(wrong)} of {len(true)} wrong)")


def draw_actual_predicted(fig, configs) -> None:
    """Held-out samples: the prediction against the true value, both in the target column's units, with the
    diagonal where they would agree and the RMSE in the title."""
    from dslc.runtime.data.preprocessing import to_target_units
    cfg = configs[0]
    data = cfg.data()
    name, split = cfg.held_out_or_train(data)
    inputs, targets = _subset(split, MAX_POINTS)
    (pred,), _ = outputs_of(cfg.module(), inputs)
    prep = cfg.preprocessing
    units = (prep.get("output_units") or {}).get("output")
    pred = to_target_units([pred], prep, ["output"])[0].reshape(-1)
    true = to_target_units([targets[0].numpy()], prep, ["output"])[0].reshape(-1)
    what = units["column"] if units else cfg.target_name
    ax = fig.subplots()
    ax.scatter(true, pred, s=18, alpha=0.7, color="C0", edgecolors="none")
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    pad = 0.04 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", linewidth=1, linestyle="--", label="predicted = actual")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"actual {what}")
    ax.set_ylabel(f"predicted {what}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    rmse = float(np.sqrt(np.mean((pred - true) ** 2)))
    ax.set_title(f"{cfg.title}: {name} split, {len(true)} samples\nRMSE {rmse:.4g}"
                 + (f" (in {what}'s own units)" if units else ""), fontsize="medium")


def pca_2d(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of [N, F] values and their shares of the variance.

    numpy's SVD of the smaller of the two Gram matrices (F x F or N x N): its singular values are the
    squared singular values of the centred data, so the result equals the data's SVD at a fraction of the cost.
    """
    centred = values - values.mean(axis=0, keepdims=True)
    n, f = centred.shape
    if f <= n:
        u, s, _ = np.linalg.svd(centred.T @ centred, hermitian=True)
        projected = centred @ u[:, :2]
    else:
        u, s, _ = np.linalg.svd(centred @ centred.T, hermitian=True)
        projected = u[:, :2] * np.sqrt(np.maximum(s[:2], 0.0))
    share = s / max(float(s.sum()), 1e-12)
    if projected.shape[1] < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
        share = np.pad(share, (0, 2 - len(share)))
    return projected, share[:2]


def draw_embedding(fig, configs) -> None:
    """The input of the final linear layer (the last hidden layer), projected to 2-D, coloured by class."""
    cfg = configs[0]
    name, _, _, _, true, hidden = _classified(cfg, limit=MAX_POINTS)
    points, share = pca_2d(hidden.reshape(len(hidden), -1).astype(np.float64))
    ax = fig.subplots()
    _scatter_by_class(ax, points, true, cfg.facts)
    ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({share[1]:.0%} of variance)")
    ax.set_title(f"{cfg.title}: input of {cfg.facts.final_layer} ({hidden.shape[1]} features), "
                 f"{name} split, PCA")


def _scatter_by_class(ax, points: np.ndarray, labels_: np.ndarray | None, facts, three_d: bool = False) -> None:
    coords = [points[:, i] for i in range(points.shape[1])]
    if labels_ is None:
        ax.scatter(*coords, s=6, alpha=0.6, color="C0")
        return
    classes = np.unique(labels_)
    names = _labels(facts, int(classes.max()) + 1)
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    import matplotlib
    colours = matplotlib.colormaps[cmap]
    for c in classes:
        sel = labels_ == c
        ax.scatter(*[x[sel] for x in coords], s=6, alpha=0.7, color=colours(int(c) % colours.N), label=names[c])
    ax.legend(fontsize="small", markerscale=2.5, loc="best", ncols=2 if len(classes) > 6 else 1)
    if not three_d:
        ax.grid(True, alpha=0.3)


# ---------------------------------------------------------------- sequences


def draw_sequence(fig, configs) -> None:
    """Input, target and prediction over time: windows joined in order, so state carries across them."""
    cfg = configs[0]
    data = cfg.data()
    name, split = cfg.held_out_or_train(data)
    x, y = split.inputs[0], split.targets[0]
    n, steps = int(x.shape[0]), int(x.shape[1])
    joined = x.reshape(1, n * steps, *x.shape[2:])
    (carried,), _ = outputs_of(cfg.module(), [joined])
    (reset,), _ = outputs_of(cfg.module(), [x])
    dt = cfg.source_args.get("dt") or 1.0
    t = np.arange(n * steps) * dt
    ax = fig.subplots()
    ax.plot(t, x.reshape(n * steps, -1)[:, 0].numpy(), color="0.6", linewidth=1, label=f"input {cfg.input_name}")
    ax.plot(t, y.reshape(n * steps, -1)[:, 0].numpy(), color="0.1", linewidth=1.6, label=f"target {cfg.target_name}")
    ax.plot(t, carried.reshape(n * steps, -1)[:, 0], color="C0", linewidth=1.6, label="prediction (state carried)")
    if cfg.carries_state:
        ax.plot(t, reset.reshape(n * steps, -1)[:, 0], color="C1", linewidth=1, linestyle="--",
                label="prediction (each window from zero state)")
    if n <= 100:
        for b in range(1, n):
            ax.axvline(b * steps * dt, color="0.85", linewidth=0.6, zorder=0)
    ax.set_xlabel("t" if cfg.source_args.get("dt") else "time step")
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize="small", frameon=False)
    mse = float(np.mean((carried.reshape(-1) - y.reshape(-1).numpy()) ** 2))
    ax.set_title(f"{cfg.title}: {name} split, {n} windows of {steps} steps in order (mse {mse:.4g})")


# ---------------------------------------------------------------- autoencoders


def draw_reconstructions(fig, configs) -> None:
    """Held-out originals (top row of each pair) above their reconstructions."""
    cfg = configs[0]
    data = cfg.data()
    name, split = cfg.held_out_or_train(data)
    inputs, _ = _subset(split, RECON_COLUMNS)
    outs, _ = outputs_of(cfg.module(), inputs)
    shape = cfg.facts.image_shape
    originals = _as_images(inputs[0].numpy(), shape)
    recon = _as_images(outs[cfg.facts.reconstruction], shape)
    vmin, vmax = float(originals.min()), float(originals.max())
    cols = len(originals)
    axes = fig.subplots(2, cols, squeeze=False)
    for j in range(cols):
        _show(axes[0, j], originals[j], vmin, vmax)
        _show(axes[1, j], np.clip(recon[j], vmin, vmax), vmin, vmax)
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstructed")
    mse = float(np.mean((outs[cfg.facts.reconstruction].reshape(cols, -1) - inputs[0].reshape(cols, -1).numpy()) ** 2))
    fig.suptitle(f"{cfg.title}: {name} split, output {cfg.facts.reconstruction} (mse on these {cols}: {mse:.4g})")


def draw_code_space(fig, configs) -> None:
    """The code of held-out samples: a 3-D scatter for three numbers, 2-D for two, else its PCA; by label."""
    cfg = configs[0]
    data = cfg.data()
    name, split = cfg.held_out_or_train(data)
    inputs, targets = _subset(split, MAX_POINTS)
    outs, _ = outputs_of(cfg.module(), inputs)
    code = outs[cfg.facts.code].reshape(len(inputs[0]), -1).astype(np.float64)
    labels_ = None
    if targets and not targets[0].dtype.is_floating_point and targets[0].dim() == 1:
        labels_ = targets[0].numpy()
    dims = code.shape[1]
    title = f"{cfg.title}: output {cfg.facts.code} ({dims} numbers), {name} split"
    if dims == 3:
        ax = fig.add_subplot(projection="3d")
        _scatter_by_class(ax, code, labels_, cfg.facts, three_d=True)
        ax.set_xlabel("code 1")
        ax.set_ylabel("code 2")
        ax.set_zlabel("code 3")
    else:
        ax = fig.subplots()
        if dims == 2:
            points, axis = code, ("code 1", "code 2")
        else:
            points, share = pca_2d(code)
            axis = (f"PC 1 ({share[0]:.0%})", f"PC 2 ({share[1]:.0%})")
            title += ", PCA"
        _scatter_by_class(ax, points, labels_, cfg.facts)
        ax.set_xlabel(axis[0])
        ax.set_ylabel(axis[1])
    ax.set_title(title)
