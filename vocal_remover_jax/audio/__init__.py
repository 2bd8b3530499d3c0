"""Audio files and the STFT: the light half of the project (no TensorFlow, no trainer)."""
