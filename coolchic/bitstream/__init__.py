"""The coolchic bitstream: header, network-parameter coding, integer ARM, latent range coding.

Modules (import the one you need; this package imports nothing on its own):

* :mod:`~coolchic.bitstream.constants`: format constants and decoder limits;
* :mod:`~coolchic.bitstream.bits`: MSB-first bit writer and reader;
* :mod:`~coolchic.bitstream.expgolomb`: vectorised signed exp-Golomb codes;
* :mod:`~coolchic.bitstream.header`: the self-describing header and the file container
  (torch-free);
* :mod:`~coolchic.bitstream.header_fields`: the header's fields as one table, with their ranges
  and rules, walked by the writer, the reader and the validator
  (:mod:`~coolchic.bitstream.bitfields`);
* :mod:`~coolchic.bitstream.nn_params`: exp-Golomb coding of the network parameters' integers
  (their steps and predictions are :mod:`coolchic.nnquant.params`);
* :mod:`~coolchic.bitstream.fixed_point`: the bit-exact integer ARM and the shipped μ/scale table;
* :mod:`~coolchic.bitstream.latents`: wavefront range coding of the latent grids.

The layout is documented field by field in ``docs/bitstream.md``.
"""
