"""Data: sources of text, vocabularies, and batches for the trainer."""

IGNORE = -100  # a target id that no loss or count includes (torch's cross_entropy ignore_index)
