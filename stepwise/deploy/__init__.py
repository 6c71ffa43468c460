"""Deployment: ONNX and Hugging Face export, quantization, distillation and pruning of trained runs."""
