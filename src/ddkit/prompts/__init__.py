"""Prompts for text-conditioned priors: a WordNet reader and the diversified prompt builder (DPE)."""
