"""Training: native models, ONNX export and parity, evaluation, reports, registration."""
