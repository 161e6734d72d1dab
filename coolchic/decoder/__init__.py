"""The decoder: a ``.cool`` stream → the frame, with numpy and constriction only (no torch).

Importing it, or decoding, loads neither torch nor any training code, so that ``coolchic
decode`` starts in a fraction of a second. It rebuilds the networks from the architecture in
the header, the shared layout (:mod:`coolchic.model.layout`) and the parameter groups
(:mod:`coolchic.nnquant.params`), decodes the latents with the integer ARM
(:mod:`coolchic.bitstream`), then runs upsampling and synthesis in float64
(:mod:`coolchic.decoder.networks`), so that the 8/10-bit rounding of the output does not
depend on the thread count or on the BLAS kernels picked.

* :mod:`~coolchic.decoder.stream` — :func:`decode_stream`: bytes → :class:`Decoded`;
* :mod:`~coolchic.decoder.networks` — the numpy upsampling and synthesis.
"""

from coolchic.decoder.stream import Decoded, decode, decode_stream, model_config_from_header

__all__ = ["Decoded", "decode", "decode_stream", "model_config_from_header"]
