"""Machine learning: shared feature definitions, training, ONNX export, registry, inference, explanations."""
