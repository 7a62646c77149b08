"""Training sessions: what `dslc train`, `dslc eval` and the Python API (`dslc.load(...).train()`) share.

plan.py      which configurations a run trains: a spec and overrides, or a run to resume (run.json)
train.py     training a plan into its run directory: data, loop, summary.json, messages
finish.py    what follows training: ONNX export and verification beside the plots, with progress lines
evaluate.py  a trained run's checkpoint evaluated on one of its data splits

This package sits above runtime.export and runtime.pictures (it runs both after training) and
below the command line and the Python API, which keep only argument handling.
"""
