"""JAX/Flax frame-transformer vocal remover."""

__version__ = "0.1.0"
