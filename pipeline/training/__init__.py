"""Fine-tuning Whisper: data, model setup (LoRA / full), the training loop, the encoder cache, export.

The `train` stage (pipeline/stages/train.py) is a thin wrapper around `Trainer`.
"""
