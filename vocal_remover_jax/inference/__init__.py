"""Inference: the portable model file, chunked separation, and the `separate` and `evaluate` commands.

Nothing here imports TensorFlow, TFDS, Orbax, the trainer or the data pipeline, so `separate`
starts fast and installs light (`export`, which reads training checkpoints, lives in `train/`).
"""
