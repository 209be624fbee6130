"""Deployment: ONNX models run by onnxruntime, int8 quantization, and the HTTP model server with its web page.

Submodules are imported where used, so that importing the library needs neither onnxruntime nor FastAPI.
"""
