"""What the second self knows: hybrid search over layer 0 (and, later, the natural-language layer 1)."""
