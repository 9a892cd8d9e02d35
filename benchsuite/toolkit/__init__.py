"""Helpers for method authors: which tensors are weights, elementwise reparameterizations, and the
optimizer, loss and schedule a task file builds."""
