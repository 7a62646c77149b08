"""From syntax tree to PyTorch: catalogs, checks and shape inference (torch-free), then module building."""
