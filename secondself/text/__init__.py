"""The ground floor for language knowledge that many layers share: dates, words, phrasing, patterns, grounding.

Boundary: nothing here knows about stores, models, memories or forms. A module in `text/` imports only the
standard library and, at most, `secondself.types` / `secondself.errors`; every other layer (ingest, memory,
prefill, train, bridge, serve, cli) may import from here, never the other way (`tests/test_layers.py` checks).
One copy of each piece of knowledge lives here, so a second copy cannot drift from the first.
"""
