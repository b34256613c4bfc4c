"""Benchmarks for mtmm-keras (not part of the installed library; PyTorch is a bench-only dependency)."""
