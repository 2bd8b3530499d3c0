"""Model files installed with the package (package data): `starter.safetensors`, the model
`separate`, `evaluate` and `describe` use when no --model is given (inference/packaged.py).
It is written by `python benchmarks/starter_model.py ship`; an install without it asks for --model."""
