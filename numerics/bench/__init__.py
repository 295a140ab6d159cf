"""The ``bench`` command: timing of one guided sampler step per backend (:mod:`numerics.bench.timing`) and
the plain NumPy implementation it is compared with (:mod:`numerics.bench.numpy_baseline`)."""
