"""rnacli: robust LLM unlearning with Random Noise Augmentation (RNA)."""

__version__ = "0.1.0"
