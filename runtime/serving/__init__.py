"""Serving: exported models run with onnxruntime and numpy only (never torch): predict, serve."""
