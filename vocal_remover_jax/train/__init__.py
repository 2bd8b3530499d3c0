"""Sharded training: BERT-style and GAN pretraining, and finetuning for vocal removal."""
