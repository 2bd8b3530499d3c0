"""Records, manifests, synthetic audio and the tf.data pipelines (training side only)."""
