"""Exporting graphs to other formats: ONNX (``gn.export_onnx``)."""
from .onnx_export import export_onnx

__all__ = ["export_onnx"]
