"""secondself: a local-first, private, AI-native memory for one person.

Glossary (the paper "AI-native Memory 2.0: Second Me" numbers its layers; we name modules for what they hold):
- layer 0, raw memory: `ingest/` (readers, chunking, pipeline), `store` and `memory/search` (hybrid search).
- layer 1, natural-language memory: `memory/build.py` makes topics, facts, shades, the biography and status,
  versioned by `memory/versions.py`.
- layer 2, the personal model: `train/` synthesizes grounded data from layers 0-1, fine-tunes a LoRA
  adapter, evaluates it against its base and keeps adapter versions.

Nothing runs at import time, and heavy libraries (torch, transformers) are imported only where used.
"""

from .errors import SecondSelfError
from .types import (
           Block,
           Chunk,
           ChunkDraft,
           Entity,
           Fact,
           Hit,
           ParsedDocument,
           Profile,
           SearchFilters,
           Shade,
           SourceInfo,
           Topic,
)

__version__ = "0.1.0"

__all__ = ["SecondSelfError", "Block", "Chunk", "ChunkDraft", "Hit", "ParsedDocument", "SearchFilters",
           "SourceInfo", "Fact", "Entity", "Topic", "Shade", "Profile", "__version__"]
