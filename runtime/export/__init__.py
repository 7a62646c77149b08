"""Export: a trained model to a verified ONNX file (and a Triton repository entry)."""
