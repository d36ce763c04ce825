"""Offline data sources for optprobe experiments: synthetic problems, scikit-learn's bundled sets,
MNIST-1D (generated locally), a byte-level text corpus shipped by a pip package, and user data on disk."""
