"""Records, manifests, synthetic audio and the host side of the training input (training side only)."""
