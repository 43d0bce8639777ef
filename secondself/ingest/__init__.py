"""Turning files into chunks: readers, chunking, the ingest pipeline."""
