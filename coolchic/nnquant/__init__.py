"""The network parameters as integers: quantisation steps, prediction, step search and RDOQ.

* :mod:`~coolchic.nnquant.params` — torch-free: the parameter groups in coding order, the
  step ``2^-e`` of each group, the prediction of the fixed filters, and
  :class:`~coolchic.nnquant.params.QuantizedNetworks`, the one container of the six groups
  that the encoder fills, the stream writer codes and the decoder reads back;
* :mod:`~coolchic.nnquant.search` — torch, encoder only: the rate-distortion choice of the
  steps and RDOQ (of the network integers, then of the improbable latents), which evaluate
  the model.

Imports flow one way: ``params`` builds on :mod:`coolchic.bitstream` (which codes plain
integer arrays and knows nothing of models), ``search`` on ``params`` and on
:mod:`coolchic.train`. The decoder imports ``params`` only, so it stays free of torch. This
package imports nothing on its own.
"""
