"""coolchic: an overfitted neural image codec (Cool-chic family) shipped as a dependable tool.

Importing the package is cheap: it sets up the process environment (the MPS fallback on Apple
silicon, which must happen before torch is imported) and exposes the version. The codec, the
CLI and the daemon live in subpackages that import torch only when they need it.
"""

from coolchic._env import bootstrap_env

__version__ = "0.1.0"

bootstrap_env()
