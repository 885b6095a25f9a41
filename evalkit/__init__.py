"""evalkit: evaluate, fine-tune and compare language models with numbers you can trust."""

__version__ = "0.1.0"
