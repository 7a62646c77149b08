"""Running compiled specs: data, training, checkpoints, ONNX export and onnxruntime inference."""
