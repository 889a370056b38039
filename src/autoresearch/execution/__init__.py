"""Where phases run: the sandbox boundary, the one phase runner, the split evaluator."""
