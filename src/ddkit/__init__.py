"""ddkit: dataset distillation with honest, reproducible evaluation."""

__version__ = "0.1.0"
