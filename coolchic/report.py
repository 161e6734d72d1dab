"""What a stream says about itself, as the encoder's report and ``coolchic info`` show it.

Both describe a stream with the same keys: built here once, they cannot drift apart.
Torch-free, so that ``coolchic info`` starts without loading torch.
"""

from __future__ import annotations

from typing import Any

from coolchic.bitstream.header import StreamHeader
from coolchic.decoder import model_config_from_header
from coolchic.model.complexity import mac_per_pixel

__all__ = ["stream_report"]


def stream_report(header: StreamHeader, file_bytes: int) -> dict[str, Any]:
    """Size, format, rate, decoder complexity and architecture of a stream of ``file_bytes``.

    Raises:
        ValueError: the header describes an invalid architecture.
    """
    config = model_config_from_header(header)
    macs = mac_per_pixel(config, header.height, header.width)
    bits = 8 * file_bytes
    return {
        "width": header.width,
        "height": header.height,
        "format": header.frame_format,
        "bit_depth": header.bit_depth,
        "bits": bits,
        "bpp": bits / (header.width * header.height),
        "mac_per_pixel": round(macs.total, 1),
        "mac_per_pixel_detail": {
            "arm": round(macs.arm, 1),
            "upsampling": round(macs.upsampling, 1),
            "synthesis": round(macs.synthesis, 1),
        },
        "architecture": {
            "n_grids": header.n_grids,
            "n_ctx_rowcol": header.n_ctx_rowcol,
            "coarser_contexts": header.coarser_contexts,
            "ifce_features": header.ifce_features,
            "hyper_grids": header.hyper_grids,
            "arm_stabiliser": header.arm_stabiliser,
            "synthesis_stabiliser": header.synthesis_stabiliser,
            "layers_arm": ",".join(str(w) for w in header.arm_hidden),
            "layers_synthesis": config.synthesis_text,
            "upsampling_kernel": header.upsampling_kernel,
            "preconcat_kernel": header.preconcat_kernel,
        },
    }
