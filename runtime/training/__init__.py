"""Training: the loop, the loss, checkpoints, run directories, progress display and torch.distributed."""
