"""Data: sources read into columns, inputs and targets computed, split and batched; the preprocessing recipe."""
