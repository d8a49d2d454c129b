"""Trajectory, sensor and tracking maths (NumPy)."""
