"""Layer 2: the personal model — training data synthesis, fine-tuning, export."""
