"""Deployment: predict on image files, export (ONNX, TorchScript, ExportedProgram), fast CPU paths."""
