"""Data: sources of text, vocabularies, and batches for the trainer."""
