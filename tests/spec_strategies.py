"""Hypothesis strategies that write whole specs: a model (a chain of catalog layers, or a block with params,
arithmetic, functions and concat), a data source whose columns fit it, and a loss over its outputs.

The layers are chosen with the catalog's own shape rules, so almost every spec written checks; the point is
what happens next (tests/test_semantics.py): a spec that checks must train, and compute per sample what the
checker typed. Used by the fast tier there (a few hundred examples) and the slow tier (10,000).
"""

from __future__ import annotations

from hypothesis import strategies as st

from dslc.compiler.layers import LAYERS
from dslc.compiler.shapes import ShapeError, TensorShape


def _args(name: str, given: dict) -> dict:
    out = {a.name: a.default for a in LAYERS[name].args if not a.required}
    out.update(given)
    if any(a.variadic for a in LAYERS[name].args):
        out.setdefault("dims", [])
    return out


def _text(name: str, given: dict, positional=()) -> str:
    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(lit(x) for x in v) + "]"
        return str(v)
    parts = [lit(v) for v in positional] + [f"{k}={lit(v)}" for k, v in given.items() if k not in positional]
    return f"{name}({', '.join(parts)})" if parts else name


@st.composite
def stage(draw, shape: TensorShape):
    """(stage text, output shape) of one layer that takes `shape`, or None when none fits."""
    r, dims = shape.rank, shape.dims
    fixed = not shape.symbolic
    options = []
    if shape.is_int:
        options.append("embedding")
    else:
        options += ["relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu", "dropout", "identity", "softmax"]
        if r == 1 and fixed:
            options += ["linear", "linear", "layernorm", "batchnorm", "reshape"]
        if r == 2:
            if isinstance(dims[1], int):
                options += ["rnn", "lstm", "gru", "each_linear", "layernorm", "multihead_attention",
                            "transformer_encoder", "position_embedding"]
                if dims[1] % 2 == 0:
                    options.append("sinusoidal_position")
            options += ["last", "mean_over_time", "sum_over_time", "transpose"]
            if isinstance(dims[0], int):
                options += ["conv1d", "maxpool1d", "avgpool1d", "adaptive_avgpool1d", "adaptive_maxpool1d",
                            "batchnorm"]
            if fixed:
                options += ["flatten"]
        if r == 3 and isinstance(dims[0], int):
            options += ["conv2d", "conv2d", "maxpool2d", "avgpool2d", "adaptive_avgpool2d", "adaptive_maxpool2d",
                        "batchnorm", "permute"]
            if fixed:
                options += ["flatten"]
    name = draw(st.sampled_from(options))
    given: dict = {}
    positional: tuple = ()
    each = name.startswith("each_")
    if each:
        name = name[len("each_"):]
    if name == "linear":
        positional = (draw(st.integers(1, 5)),)
        given = {"features": positional[0]}
        if draw(st.booleans()):
            given["bias"] = False
    elif name == "embedding":
        positional = (draw(st.sampled_from(["data.vocab", 9])), 2 * draw(st.integers(1, 3)))
        given = {"vocab": 9, "dim": positional[1]}          # data.vocab is 7 + 2
        if draw(st.booleans()):
            given["padding"] = 0                            # a padding mask for what follows
    elif name in ("rnn", "lstm", "gru"):
        positional = (draw(st.integers(1, 4)),)
        given = {"hidden": positional[0], "layers": draw(st.integers(1, 2)), "bidirectional": draw(st.booleans())}
    elif name in ("conv1d", "conv2d"):
        positional = (draw(st.integers(1, 3)),)
        given = {"channels": positional[0], "kernel": draw(st.integers(1, 3)), "padding": draw(st.integers(0, 1))}
    elif name in ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d"):
        positional = (draw(st.integers(1, 2)),)
        given = {"kernel": positional[0]}
    elif name in ("multihead_attention", "transformer_encoder"):
        d = dims[1]
        heads = draw(st.sampled_from([h for h in (1, 2) if d % h == 0]))
        given = {"heads": heads, "causal": draw(st.booleans())}
        if name == "transformer_encoder":
            given.update(layers=draw(st.integers(1, 2)), ff=draw(st.integers(2, 6)), dropout=0.0,
                         norm_first=draw(st.booleans()))
    elif name == "position_embedding":
        positional = (12,)
        given = {"max_len": 12}
    elif name == "transpose":
        positional = (0, 1)
        given = {"first": 0, "second": 1}
    elif name == "permute":
        positional = (2, 0, 1)
        given = {"dims": [2, 0, 1]}
    elif name in ("adaptive_avgpool1d", "adaptive_avgpool2d", "adaptive_maxpool1d", "adaptive_maxpool2d"):
        positional = (draw(st.integers(1, 2)),)
        given = {"size": positional[0]}
    elif name == "dropout":
        given = {"p": draw(st.sampled_from([0.0, 0.25]))}
    elif name == "softmax":
        given = {"dim": draw(st.integers(-max(r, 1), max(r, 1) - 1))}
    elif name == "reshape":
        n = shape.numel()
        splits = [(a, n // a) for a in range(1, n + 1) if n % a == 0]
        a, b = draw(st.sampled_from(splits))
        positional = (a, b)
        given = {"dims": [a, b]}
    text = _text(name, {k: v for k, v in given.items() if k not in ("features", "channels", "kernel", "hidden",
                                                                        "size", "dims", "vocab", "dim", "max_len",
                                                                        "first", "second")}, positional)
    if name in ("conv1d", "conv2d"):
        text = f"{name}({positional[0]}, kernel={given['kernel']}, padding={given['padding']})"
    if name in ("maxpool1d", "avgpool1d", "maxpool2d", "avgpool2d", "adaptive_avgpool1d", "adaptive_avgpool2d",
                "adaptive_maxpool1d", "adaptive_maxpool2d"):
        text = f"{name}({positional[0]})"
    if name == "embedding":
        text = f"embedding({positional[0]}, {positional[1]}" + (", padding=0)" if "padding" in given else ")")
    try:
        if each:
            step = TensorShape(shape.dtype, dims[1:])
            out = LAYERS[name].shape(step, _args(name, given))
            out = TensorShape(out.dtype, (dims[0],) + out.dims)
            text = "each " + text
        else:
            out = LAYERS[name].shape(shape, _args(name, given))
    except ShapeError:
        return None
    return text, out


@st.composite
def chain(draw, shape: TensorShape, max_stages: int = 4):
    """(stage texts, output shape): 1 to max_stages layers that fit one after the other; a stage that keeps
    the shape is sometimes repeated or made residual."""
    texts = []
    for _ in range(draw(st.integers(1, max_stages))):
        got = draw(stage(shape))
        if got is None:
            continue
        text, out = got
        if out == shape and shape.is_float and not text.startswith("each "):
            wrap = draw(st.sampled_from(["", "", "repeat", "residual"]))
            if wrap == "repeat":
                text = f"repeat(2) {text}"
            elif wrap == "residual":
                text = f"residual {{ {text} }}"
        texts.append(text)
        shape = out
    if not texts:
        texts, shape = ["identity"] if not shape.is_int else ["embedding(9, 2)"], \
            (shape if not shape.is_int else TensorShape("f32", shape.dims + (2,)))
    return texts, shape


WEIGHTED = {"linear", "conv1d", "conv2d", "rnn", "lstm", "gru", "embedding", "batchnorm", "layernorm"}

INPUTS = st.sampled_from(["f32[]", "f32[1]", "f32[4]", "f32[2, 3]", "f32[T, 1]", "f32[T, 2]", "f32[6, 1]",
                          "f32[1, 28, 28]", "f32[784]", "f32[28, 28]", "i64[T]", "f32[5]"])


def _shape(text: str) -> TensorShape:
    dtype, rest = text.split("[")
    dims = [d.strip() for d in rest.rstrip("]").split(",") if d.strip()]
    return TensorShape(dtype, tuple(int(d) if d.isdigit() else d for d in dims))


def _dims(shape: TensorShape) -> str:
    return "[" + ", ".join(str(d) for d in shape.dims) + "]"


@st.composite
def specs(draw):
    """The text of a whole spec: data, model and train blocks."""
    input_text = draw(INPUTS)
    x = _shape(input_text)
    # ---- data: a source whose columns fit the model input
    if x.dims in ((1, 28, 28), (784,), (28, 28)):
        data = 'source = mnist(root="nowhere")'
        targets = {"label": TensorShape("i64", ())}
        if draw(st.booleans()):
            data += "\n    targets = [image]"
            targets = {"image": TensorShape("f32", (1, 28, 28))}
        classes = 10
    elif x.is_int:
        data = 'source = text_csv("nowhere.csv", max_len=7, vocab=7)'
        targets, classes = {"label": TensorShape("i64", ())}, None
    elif x.dims == (5,):
        # a table with category columns: one-hot vectors and fitted scaling in one feature vector
        columns = ('c=["a", "b", "c", "a", "b", "c"], k=["u", "v", "u", "v", "v", "u"], '
                   "a0=[0.5, -1.0, 2.0, 0.0, 1.5, -0.5], y=[1.0, 3.0, -2.0, 0.5, 4.0, 2.5]")
        feature = draw(st.sampled_from(["[one_hot(c), standardize(a0), min_max(a0 * 2)]",
                                        "[one_hot(c), standardize([a0, y])]",
                                        "concat(one_hot(c), stack(a0, standardize(a0 + 1)))"]))
        target = draw(st.sampled_from(["k", "standardize(y)", "y / 10", "min_max(exp(y))", "y"]))
        data = f"source = table({columns})\n    inputs = [{feature}]\n    targets = [{target}]"
        if target == "k":
            targets, classes = {"k": TensorShape("i64", ())}, 2
        else:
            targets, classes = {target: TensorShape("f32", ())}, None
    elif x.symbolic or x.dims == (6, 1):
        features = x.dims[1]
        columns = ", ".join(f"c{i}=sin(t * {i + 1})" for i in range(max(features, 1) + 1))
        data = f"source = sequence(windows=5, length=6, {columns})"
        if features == 1:
            data += "\n    inputs = [c0]\n    targets = [c1]"
        else:
            data += "\n    inputs = [concat(c0, c1 * 2)]\n    targets = [c2]"
        targets, classes = {"c1" if features == 1 else "c2": TensorShape("f32", (6, 1))}, None
    else:
        n = x.numel()
        k = max(n, 1)
        columns = ", ".join(f"a{i}=uniform(-1, 1)" for i in range(k))
        target_kind = draw(st.sampled_from(["scalar", "vector", "pair"]))
        target_cols = {"scalar": "y=a0 * 2 - 1", "vector": "y=a0 * 2 - 1, z=a0 + 0.5",
                       "pair": "y=a0 * 2 - 1, z=a0 + 0.5"}[target_kind]
        data = f"source = generate(n=6, seed=1, {columns}, {target_cols})"
        inputs = f"stack({', '.join(f'a{i}' for i in range(k))})" if k > 1 else draw(st.sampled_from(["a0", "a0 * 3 + 1", "tanh(a0)"]))
        if target_kind == "vector":
            data += f"\n    inputs = [{inputs}]\n    targets = [stack(y, z)]"
            targets = {"stack(y, z)": TensorShape("f32", (2,))}
        elif target_kind == "pair":
            data += f"\n    inputs = [{inputs}]\n    targets = [y, z]"
            targets = {"y": TensorShape("f32", ()), "z": TensorShape("f32", ())}
        else:
            data += f"\n    inputs = [{inputs}]\n    targets = [y]"
            targets = {"y": TensorShape("f32", ())}
        classes = None
    # ---- model
    stages, out = draw(chain(x))
    weighted = any(s.split("(")[0].removeprefix("each ") in WEIGHTED for s in stages)
    form = draw(st.sampled_from(["chain", "expression", "two"] if weighted else ["expression", "two"]))
    if not weighted and out.is_float and out.numel() is not None and out.rank <= 1:
        stages.append("linear(2)" if out.rank == 1 else "reshape(1) linear(2)")
        out = TensorShape("f32", (2,))
    params, body = [], []
    if form == "chain":
        body = stages
        outputs = [out]
    else:
        body = [f"block f {{ {' '.join(stages)} }}"]
        value, shape = "f(x)", out
        if not out.is_float:
            form = "chain"
            body, outputs = stages, [out]
        else:
            for i in range(draw(st.integers(1, 3))):
                op = draw(st.sampled_from(["+", "-", "*", "fn", "param", "concat", "const", "matmul", "index",
                                           "softmax", "reduce", "transpose", "split"]))
                if i == 0 and not weighted:
                    op = "param"          # something to train
                fixed_last = shape.rank >= 1 and isinstance(shape.dims[-1], int)
                if op == "matmul" and fixed_last:
                    k = draw(st.integers(1, 3))
                    name = f"m{i}"
                    params.append(f"param {name}: f32[{shape.dims[-1]}, {k}] = normal(0, 0.5)")
                    value = f"{value} @ {name}"
                    shape = shape.with_dims(shape.dims[:-1] + (k,))
                    continue
                if op == "index" and shape.rank >= 1 and isinstance(shape.dims[0], int):
                    if draw(st.booleans()) and shape.rank >= 2:
                        value = f"({value})[0]"
                        shape = shape.with_dims(shape.dims[1:])
                    else:
                        n = shape.dims[0]
                        value = f"({value})[{n - 1 if n > 1 else 0}:]" if n > 1 else f"({value})[:]"
                        shape = shape.with_dims((1 if n > 1 else n,) + shape.dims[1:])
                    continue
                if op == "softmax" and shape.rank >= 1:
                    value = f"softmax({value}, axis={draw(st.integers(0, shape.rank - 1))})"
                    continue
                if op == "reduce" and shape.rank >= 1:
                    axis = draw(st.integers(0, shape.rank - 1))
                    value = f"{draw(st.sampled_from(['mean', 'sum', 'max']))}({value}, axis={axis})"
                    shape = shape.with_dims(shape.dims[:axis] + shape.dims[axis + 1:])
                    continue
                if op == "transpose" and shape.rank >= 2:
                    value = f"transpose({value}, 0, {shape.rank - 1})"
                    dims = list(shape.dims)
                    dims[0], dims[-1] = dims[-1], dims[0]
                    shape = shape.with_dims(dims)
                    continue
                if op == "split" and fixed_last and shape.dims[-1] % 2 == 0:
                    value = f"split({value}, 2)[{draw(st.integers(0, 1))}]"
                    shape = shape.with_dims(shape.dims[:-1] + (shape.dims[-1] // 2,))
                    continue
                if op == "fn":
                    value = f"{draw(st.sampled_from(['tanh', 'sigmoid', 'abs', 'relu', 'softplus']))}({value})"
                elif op == "const":
                    value = f"({value}) * {draw(st.sampled_from(['2', '0.5', '-1.5']))}"
                elif op == "concat" and shape.rank >= 1 and isinstance(shape.dims[-1], int):
                    value = f"concat({value}, {value} * 2, axis=-1)"
                    shape = shape.with_dims(shape.dims[:-1] + (2 * shape.dims[-1],))
                elif op in ("+", "-", "*", "param"):
                    kind = draw(st.sampled_from(["same", "suffix", "ones", "extra"]))
                    fixed = [d if isinstance(d, int) else 1 for d in shape.dims]
                    if kind == "same":
                        pdims = fixed
                    elif kind == "suffix":
                        pdims = fixed[1:] if fixed else []
                    elif kind == "ones":
                        pdims = [1] * len(fixed)
                    else:
                        pdims = [2] + [1] * len(fixed)      # more axes than a sample: broadcast per sample
                        shape = shape.with_dims((2,) + tuple(shape.dims))
                    name = f"w{i}"
                    ptype = f"f32[{', '.join(str(d) for d in pdims)}]"
                    params.append(f"param {name}: {ptype} = normal(0, 0.5)")
                    value = f"{value} {op if op != 'param' else '+'} {name}"
            if form == "two":
                outputs = [shape, out]
                body += params + [f"return {value}, f(x)"]
            else:
                outputs = [shape]
                body += params + [f"return {value}"]
    # ---- loss
    target_names = list(targets)
    y = target_names[0]
    yname = y if y.isidentifier() else "target"
    o = outputs[0]
    out_ref = "output" if len(outputs) == 1 else "output[0]"
    choices = ["expr_mean", "expr_sum", "expr_mixed"]
    if classes and o.rank == 1 and o.dims == (classes,) and targets[y].is_int and len(outputs) == 1:
        choices += ["cross_entropy", "cross_entropy", "smoothing"]
    if (not targets[y].is_int and o.numel() is not None and targets[y].numel() is not None
            and o.numel() == targets[y].numel() and len(outputs) == 1 and len(targets) == 1):
        choices += ["mse", "l1"]
    if targets[y].is_int:
        choices = [c for c in choices if not c.startswith("expr")] or ["input_recon"]
        if choices == ["input_recon"]:
            if len(outputs) > 1 and outputs[1] == x:
                choices = ["input_recon"]
            else:
                choices = ["output_only"]
    kind = draw(st.sampled_from(choices))
    target_ref = yname if len(targets) > 1 or yname != "target" else "target"
    if kind == "expr_mean":
        loss = f"mean(({out_ref} - {target_ref}) ** 2)"
    elif kind == "expr_sum":
        loss = f"sum(abs({out_ref} - {target_ref})) / 6"
    elif kind == "expr_mixed":
        extra = " + 0.01 * mean(w0 ** 2)" if any(p.startswith("param w0") for p in params) else ""
        loss = f"mean(({out_ref} - {target_ref}) * {target_ref}){extra}"
        if len(outputs) > 1:
            loss += " + mean(output[1] ** 2)"
    elif kind == "output_only":
        loss = f"mean({out_ref} ** 2)"
    elif kind == "input_recon":
        loss = "mse(output[1], x)"
    elif kind == "smoothing":
        loss = "cross_entropy(label_smoothing=0.1)"
    else:
        loss = kind
    metrics = ""
    if kind in ("cross_entropy", "smoothing"):
        metrics = "\n    metrics = [accuracy, top_k(k=3)]"
    elif kind in ("mse", "l1"):
        metrics = "\n    metrics = [mse, mae]"
    text = (f"data {{\n    {data}\n    batch = 3\n}}\n\n"
            f"model m(x: {input_text}) {{\n" + "".join(f"    {line}\n" for line in body) + "}\n\n"
            f"train {{\n    loss = {loss}\n    optimizer = sgd(lr=0.01){metrics}\n    steps = 1\n}}\n")
    return text
