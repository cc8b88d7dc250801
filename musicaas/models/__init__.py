"""Tensor contracts of the models the platform serves (torch-free; numpy only)."""
