"""dops_worker: the Python side of dops; owns the tensors for one device.

Kept free of imports on purpose: ``python -m dops_worker`` must be able to guard stdout before
any library (torch above all) is imported.
"""

__version__ = "0.1.0"
