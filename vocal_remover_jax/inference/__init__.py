"""Inference: the portable model file, chunked separation, and the export/separate/evaluate commands.

Nothing here imports TensorFlow, the trainer or the data pipeline (except `export`, which reads
training checkpoints), so `separate` starts fast and installs light.
"""
