"""How each plot kind is drawn: one function per entry of the plot catalog.

Every function takes a matplotlib Figure (fixed size, constrained layout) and
the trained configurations it shows (`plots.Config`: name, summary, facts,
and lazily the trained module and the data), and fills the figure. What a
drawing needs from the model and the data is computed by a `*_arrays`
function into named numpy arrays (`Config.arrays`), which the configuration
keeps beside its checkpoint: drawing again needs neither torch nor the
data. Which function applies to a run is the catalog's business, not this
module's. torch is imported inside the functions that run the model.
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
    for k, cfg in enumerate(configs):
        ax = axes[0 if shared else k]
        a = cfg.arrays("fit", lambda: _fit_arrays(cfg))
        if not shared or k == 0:
            _data_points(ax, cfg, a)
        label = cfg.name or "model"
        loss = _final_loss(cfg.summary)
        ax.plot(a["grid"], a["pred"].reshape(-1), color=f"C{k % 10}", linewidth=2,
                label=f"{label} ({loss})" if loss else label)
        if not shared:
            ax.set_title(cfg.name or cfg.spec_name)
        ax.legend(fontsize="small")
    fig.suptitle(f"{configs[0].spec_name}: data and fitted curve" + ("s" if len(configs) > 1 else ""))


def _fit_arrays(cfg) -> dict:
    """The train and held-out points, a grid of x values spanning them and the model's y over the grid."""
    import torch
    data = cfg.data()
    held_name, held = cfg.held_out(data)
    out = {"train_x": data.train.inputs[0].reshape(-1).numpy(), "train_y": data.train.targets[0].reshape(-1).numpy(),
           "held": np.asarray(held_name or "")}
    xs = [out["train_x"]]
    if held is not None:
        out["held_x"], out["held_y"] = held.inputs[0].reshape(-1).numpy(), held.targets[0].reshape(-1).numpy()
        xs.append(out["held_x"])
    lo, hi = min(float(x.min()) for x in xs), max(float(x.max()) for x in xs)
    pad = 0.05 * (hi - lo or 1.0)
    out["grid"] = np.linspace(lo - pad, hi + pad, 300, dtype=np.float32)
    (out["pred"],), _ = outputs_of(cfg.module(), [torch.from_numpy(out["grid"]).reshape(300, *cfg.input_dims)])
    return out


def _data_points(ax, cfg, a: dict) -> None:
    """Scatter the configuration's train and held-out points."""
    ax.scatter(a["train_x"], a["train_y"], s=22, color="0.15", label="train", zorder=3)
    if "held_x" in a:
        ax.scatter(a["held_x"], a["held_y"], s=26, facecolors="none", edgecolors="C3", label=str(a["held"]),
                   zorder=3)
    ax.set_xlabel((cfg.preprocessing.get("input_exprs") or [cfg.input_name])[0])
    ax.set_ylabel(cfg.target_name)
    ax.grid(True, alpha=0.3)


def _final_loss(summary: dict) -> str | None:
    metrics = summary.get("metrics") or {}
    for key in ("test_loss", "val_loss", "train_loss"):
        if isinstance(metrics.get(key), (int, float)):
            return f"{key} {metrics[key]:.4g}"
    return None


# ---------------------------------------------------------------- variants side by side


def draw_variant_losses(fig, configs) -> None:
    """Grouped bars: each configuration's train / validation / test loss (of its chosen checkpoint)."""
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
                         label=key if i == 0 else None)
            ax.bar_label(bar, labels=[f"{v:.3g}"], fontsize="small", padding=2)
    ax.set_xticks(range(len(configs)), [c.name or "run" for c in configs])
    ax.set_ylabel("loss (each run's chosen checkpoint)")
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{configs[0].spec_name}: loss per variant")


# ---------------------------------------------------------------- classifiers


def _classified(cfg) -> dict:
    """On the held-out split (else train): {"split", "scores" [N, classes], "true" [N]}.

    The model runs once per configuration (the final linear layer's input captured on the way, for the
    embedding); the confusion matrix, the predictions grid and the embedding share the result.
    """
    def compute():
        data = cfg.data()
        name, split = cfg.held_out_or_train(data)
        (scores,), hidden = outputs_of(cfg.module(), split.inputs, hook_path=cfg.facts.final_layer)
        cfg.cache["hidden"] = hidden
        return {"split": np.asarray(name), "scores": scores, "true": split.targets[0].reshape(-1).numpy()}
    return cfg.arrays("classified", compute)


def draw_confusion(fig, configs) -> None:
    cfg = configs[0]
    a = _classified(cfg)
    name, scores, true = str(a["split"]), a["scores"], a["true"]
    pred = scores.argmax(axis=1)
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
                        color="white" if matrix[i, j] > 0.55 * top else "0.1", in_layout=False)
    accuracy = float((pred == true).mean()) if len(true) else float("nan")
    key = {"test": "test", "validation": "val", "train": "train_eval"}[name] + "_accuracy"
    ax.set_title(f"{cfg.title}: {name} split, {len(true)} samples, {key} {accuracy:.6g} ({cfg.checkpoint_name})")


def draw_predictions(fig, configs) -> None:
    """A grid of held-out images labelled with predicted (and true) labels; mistakes in red, framed.

    The grid is one mosaic image in one axes (32 small axes cost ~0.7 s to lay out and draw)."""
    from matplotlib.patches import Rectangle
    cfg = configs[0]
    rows, cols = GRID
    a = _classified(cfg)
    name, scores, true = str(a["split"]), a["scores"][:2000], a["true"][:2000]
    pred = scores.argmax(axis=1)
    wrong = np.flatnonzero(pred != true)
    g = cfg.arrays("gallery", lambda: _gallery_arrays(cfg, pred, true, wrong, rows * cols))
    shown, images = list(g["index"]), g["images"]
    vmin, vmax = float(images.min()), float(images.max())
    labels = _labels(cfg.facts, max(int(pred.max()), int(true.max())) + 1)
    h, w = images.shape[1:3]
    gap, head = max(2, w // 6), max(4, (h * 2) // 5)          # between images; room for the label above each
    cell_h, cell_w = h + head, w + gap
    colour = images.ndim == 4
    mosaic = np.full((rows * cell_h + gap, cols * cell_w) + ((3,) if colour else ()), 1.0 if colour else np.nan,
                     dtype=np.float32)
    fig.set_layout_engine("none")                              # one axes, placed by hand: the mosaic fills it
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.9))
    ax.set_axis_off()
    for k, (i, image) in enumerate(zip(shown, images)):
        r, c = divmod(k, cols)
        y, x = r * cell_h + head, c * cell_w
        mosaic[y:y + h, x:x + w] = image
        ok = pred[i] == true[i]
        ax.text(x + w / 2 - 0.5, y - 1.5, labels[pred[i]] if ok else f"{labels[pred[i]]} (true {labels[true[i]]})",
                ha="center", va="bottom", fontsize="small", color="0.1" if ok else "C3", in_layout=False)
        if not ok:
            ax.add_patch(Rectangle((x - 1, y - 1), w + 1, h + 1, fill=False, edgecolor="C3", linewidth=2.5))
    import matplotlib
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=None if colour else cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.suptitle(f"{cfg.title}: predictions on the {name} split (wrong ones in red; "
                 f"{len(wrong)} of {len(true)} wrong; {cfg.checkpoint_name})")


def _gallery_arrays(cfg, pred, true, wrong, count: int) -> dict:
    """The samples the grid shows (the first ones, some mistakes among them) as images."""
    shown = list(range(min(count, len(true))))
    extra = [int(i) for i in wrong if i >= len(shown)][:count // 4]      # make sure some mistakes are seen
    if extra:
        shown = shown[:len(shown) - len(extra)] + extra
    _, split = cfg.held_out_or_train(cfg.data())
    return {"index": np.asarray(shown, dtype=np.int64),
            "images": _as_images(split.inputs[0][shown].numpy(), cfg.facts.image_shape)}


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

    Small data: numpy's SVD of the smaller Gram matrix (F x F or N x N), exact. Larger data (both sides
    over 256, e.g. 1000 samples of a CNN's 1568 features, where that costs ~0.3 s): a seeded randomized
    SVD with power iterations (Halko et al.), whose two leading components agree with the exact ones far
    below what a scatter plot shows; the variance shares use the total variance, which needs no SVD.
    """
    centred = values - values.mean(axis=0, keepdims=True)
    n, f = centred.shape
    total = float(np.einsum("ij,ij->", centred, centred))
    if min(n, f) > 256:
        rng = np.random.default_rng(0)
        q = np.linalg.qr(centred @ rng.standard_normal((f, 12)))[0]
        for _ in range(4):
            q = np.linalg.qr(centred.T @ q)[0]
            q = np.linalg.qr(centred @ q)[0]
        u_small, s, vt = np.linalg.svd(q.T @ centred, full_matrices=False)
        projected = centred @ vt[:2].T
        share = (s[:2] ** 2) / max(total, 1e-12)
        return projected, share
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
    name = str(_classified(cfg)["split"])
    a = cfg.arrays("embedding", lambda: _embedding_arrays(cfg))
    share = a["share"]
    ax = fig.subplots()
    _scatter_by_class(ax, a["points"], a["true"], cfg.facts)
    ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({share[1]:.0%} of variance)")
    ax.set_title(f"{cfg.title}: input of {cfg.facts.final_layer} ({int(a['features'])} features), "
                 f"{name} split, PCA")


def _embedding_arrays(cfg) -> dict:
    """PCA of the final linear layer's input over (at most MAX_POINTS of) the held-out samples."""
    a = _classified(cfg)
    hidden = cfg.cache.get("hidden")
    if hidden is None:                       # the scores came from the file: run the model for the hidden layer
        data = cfg.data()
        _, split = cfg.held_out_or_train(data)
        _, hidden = outputs_of(cfg.module(), [t[:MAX_POINTS] for t in split.inputs], hook_path=cfg.facts.final_layer)
    hidden = hidden[:MAX_POINTS]
    points, share = pca_2d(hidden.reshape(len(hidden), -1).astype(np.float64))
    return {"points": points, "share": share, "true": a["true"][:len(hidden)], "features": np.asarray(hidden.shape[1])}


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
    a = cfg.arrays("sequence", lambda: _sequence_arrays(cfg))
    name, n, steps = str(a["split"]), int(a["windows"]), int(a["steps"])
    dt = cfg.source_args.get("dt") or 1.0
    t = np.arange(n * steps) * dt
    ax = fig.subplots()
    ax.plot(t, a["x"], color="0.6", linewidth=1, label=f"input {cfg.input_name}")
    ax.plot(t, a["y"], color="0.1", linewidth=1.6, label=f"target {cfg.target_name}")
    ax.plot(t, a["carried"], color="C0", linewidth=1.6, label="prediction (state carried)")
    if cfg.carries_state:
        ax.plot(t, a["reset"], color="C1", linewidth=1, linestyle="--",
                label="prediction (each window from zero state)")
    if n <= 100:
        for b in range(1, n):
            ax.axvline(b * steps * dt, color="0.85", linewidth=0.6, zorder=0)
    ax.set_xlabel("t" if cfg.source_args.get("dt") else "time step")
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize="small", frameon=False)
    mse = float(np.mean((a["carried"] - a["y"]) ** 2))
    ax.set_title(f"{cfg.title}: {name} split, {n} windows of {steps} steps in order (mse {mse:.4g})")


def _sequence_arrays(cfg) -> dict:
    """The held-out windows joined in order (first feature): input, target, and the model's output with its
    state carried across windows and with each window from zero state."""
    data = cfg.data()
    name, split = cfg.held_out_or_train(data)
    x, y = split.inputs[0], split.targets[0]
    n, steps = int(x.shape[0]), int(x.shape[1])
    (carried,), _ = outputs_of(cfg.module(), [x.reshape(1, n * steps, *x.shape[2:])])
    (reset,), _ = outputs_of(cfg.module(), [x])
    first = lambda v: np.asarray(v).reshape(n * steps, -1)[:, 0]
    return {"split": np.asarray(name), "windows": np.asarray(n), "steps": np.asarray(steps),
            "x": first(x.numpy()), "y": first(y.numpy()), "carried": first(carried), "reset": first(reset)}


# ---------------------------------------------------------------- autoencoders


def draw_reconstructions(fig, configs) -> None:
    """Held-out originals (top row of each pair) above their reconstructions."""
    cfg = configs[0]
    a = cfg.arrays("reconstructions", lambda: _reconstruction_arrays(cfg))
    originals, recon = a["originals"], a["recon"]
    vmin, vmax = float(originals.min()), float(originals.max())
    cols = len(originals)
    axes = fig.subplots(2, cols, squeeze=False)
    for j in range(cols):
        _show(axes[0, j], originals[j], vmin, vmax)
        _show(axes[1, j], np.clip(recon[j], vmin, vmax), vmin, vmax)
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstructed")
    fig.suptitle(f"{cfg.title}: {a['split']} split, output {cfg.facts.reconstruction} "
                 f"(mse on these {cols}: {float(a['mse']):.4g})")


def _reconstruction_arrays(cfg) -> dict:
    data = cfg.data()
    name, split = cfg.held_out_or_train(data)
    inputs, _ = _subset(split, RECON_COLUMNS)
    outs, _ = outputs_of(cfg.module(), inputs)
    out = outs[cfg.facts.reconstruction]
    cols = len(inputs[0])
    mse = float(np.mean((out.reshape(cols, -1) - inputs[0].reshape(cols, -1).numpy()) ** 2))
    return {"split": np.asarray(name), "originals": _as_images(inputs[0].numpy(), cfg.facts.image_shape),
            "recon": _as_images(out, cfg.facts.image_shape), "mse": np.asarray(mse)}


def draw_code_space(fig, configs) -> None:
    """The code of held-out samples: a 3-D scatter for three numbers, 2-D for two, else its PCA; by label."""
    cfg = configs[0]
    a = cfg.arrays("code", lambda: _code_arrays(cfg))
    code = a["code"].astype(np.float64)
    labels_ = a["labels"] if a["labels"].size else None
    dims = code.shape[1]
    title = f"{cfg.title}: output {cfg.facts.code} ({dims} numbers), {a['split']} split"
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


def _code_arrays(cfg) -> dict:
    data = cfg.data()
    name, split = cfg.held_out_or_train(data)
    inputs, targets = _subset(split, MAX_POINTS)
    outs, _ = outputs_of(cfg.module(), inputs)
    labels_ = np.zeros(0, dtype=np.int64)
    if targets and not targets[0].dtype.is_floating_point and targets[0].dim() == 1:
        labels_ = targets[0].numpy()
    return {"split": np.asarray(name), "code": outs[cfg.facts.code].reshape(len(inputs[0]), -1),
            "labels": labels_}
