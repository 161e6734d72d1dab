"""Format constants of the coolchic bitstream, in one place and derived from each other.

Everything a decoder must agree on with the encoder lives here: the magic bytes and format
version, the latent symbol range, the fixed-point layout of the integer ARM (Cool-chic v5's
fixed point) and the size of the ``(μ, b)`` lookup table it indexes, and the limits a
decoder accepts before it allocates anything (docs/bitstream.md).

Changing any value here changes the format: bump :data:`FORMAT_VERSION`.
"""

from __future__ import annotations

from typing import Final

# --------------------------------------------------------------------------------------------
# Identification

#: First two bytes of every coolchic bitstream (followed by the format version byte).
MAGIC: Final = b"CC"
#: Version of the layout described in docs/bitstream.md, the one the encoder writes. Version 3
#: added the coarser-grid ARM contexts (one header field and the latent coding order), version 4
#: the stabilisers (two header flags and, when set, their weights), version 5 Cool-chic 5's
#: inter-feature context and hyper-latents (two header fields, the hyper grids' zero flags,
#: the IFCE weights at the end of the ARM groups, the hyper grids in the latent section),
#: version 6 one code for an architecture among the encoder's defaults (header only), version 7
#: Golomb-Rice codes for the network parameters (one header flag per group) and no latent
#: section length (the section is the rest of the file), version 8 two more architecture
#: presets (a 16-wide synthesis), version 9 one more (a 16-wide ARM).
FORMAT_VERSION: Final = 9
#: Versions this decoder reads; it refuses any other value.
READABLE_VERSIONS: Final = (2, 3, 4, 5, 6, 7, 8, 9)
#: First four bytes of a format-version-1 file: recognised only to say "re-encode it".
MAGIC_V1: Final = b"CCHC"

# --------------------------------------------------------------------------------------------
# Latent symbols (latents are clamped to [-64, 63] when written, as Cool-chic does)

#: Smallest latent value the range coder can carry (inclusive).
LATENT_MIN: Final = -64
#: Largest latent value the range coder can carry (inclusive).
LATENT_MAX: Final = 63
#: Largest magnitude of a context value fed to the integer ARM (``|LATENT_MIN|``).
LATENT_ABS_MAX: Final = max(-LATENT_MIN, LATENT_MAX)

# --------------------------------------------------------------------------------------------
# Integer ARM (Cool-chic v5's fixed point); all arithmetic on int64.

#: Fractional bits of ARM weights and of hidden activations: a weight w is ``w * 2**16``.
WEIGHT_SHIFT: Final = 16
#: Fractional bits of biases and of every accumulator (a product of two 16-bit fixed values).
BIAS_SHIFT: Final = 2 * WEIGHT_SHIFT
#: Fractional bits of the ARM outputs μ and log-scale (units of 1/256).
OUTPUT_FRAC_BITS: Final = 8
#: Right shift taking an accumulator (32 fractional bits) to an output (8 fractional bits).
OUTPUT_SHIFT: Final = BIAS_SHIFT - OUTPUT_FRAC_BITS
#: Largest step exponent of ARM weights: ``q << (WEIGHT_SHIFT - e)`` must not lose bits.
ARM_MAX_WEIGHT_EXP: Final = WEIGHT_SHIFT
#: Largest step exponent of ARM biases: ``q << (BIAS_SHIFT - e)`` must not lose bits.
ARM_MAX_BIAS_EXP: Final = BIAS_SHIFT
#: Accumulators of the integer ARM never exceed this magnitude (checked when it is built).
ARM_ACCUMULATOR_LIMIT: Final = 1 << 62
#: Below this bound every ARM value is an integer float64 holds exactly (2^53).
FLOAT_EXACT_LIMIT: Final = 1 << 53

# Laplace scale parameterisation (v5): b = exp(clamp(s - 4, -5, 5)).
#: Constant subtracted from the raw log-scale output ``s`` (folded into the output bias).
LOG_SCALE_OFFSET: Final = 4
#: Smallest log-scale ``ln b`` (b = exp(-5) = 0.0067).
LOG_SCALE_MIN: Final = -5
#: Largest log-scale ``ln b`` (b = exp(5) = 148.4).
LOG_SCALE_MAX: Final = 5

#: Lowest μ in the table; μ is clamped to ``[MU_MIN, MU_MAX)`` (the latent range).
MU_MIN: Final = LATENT_MIN
#: One past the highest μ in the table.
MU_MAX: Final = LATENT_MAX + 1
#: Entries of the μ table, ``μ[i] = MU_MIN + i / 256`` (32 768).
MU_TABLE_SIZE: Final = (MU_MAX - MU_MIN) << OUTPUT_FRAC_BITS
#: Added to the ARM μ output (1/256 units) to index the μ table (16 384).
MU_INDEX_OFFSET: Final = -MU_MIN << OUTPUT_FRAC_BITS
#: Entries of the scale table, ``b[j] = exp(LOG_SCALE_MIN + j / 256)`` (2 561, both ends).
SCALE_TABLE_SIZE: Final = ((LOG_SCALE_MAX - LOG_SCALE_MIN) << OUTPUT_FRAC_BITS) + 1
#: Added to the ARM log-scale output (1/256 units) to index the scale table (1 280).
SCALE_INDEX_OFFSET: Final = -LOG_SCALE_MIN << OUTPUT_FRAC_BITS
#: Name of the shipped table file inside the package (float32, little-endian, .npy format).
MU_SCALE_TABLE_FILE: Final = "mu_scale_table.npy"

#: Worst-case cost of one latent in the range coder: constriction's leaky quantiser gives every
#: symbol of the alphabet a probability of at least 2^-24.
MAX_BITS_PER_LATENT: Final = 24
#: Words (32 bits) a range-coder stream may hold beyond the symbol costs (state flush).
RANGE_CODER_SLACK_WORDS: Final = 4

# --------------------------------------------------------------------------------------------
# Network parameters (docs/bitstream.md)

#: Coding order of the network modules in the parameter section.
NN_MODULES: Final = ("arm", "upsampling", "synthesis")
#: Coding order of the parameter kinds inside a module.
NN_KINDS: Final = ("weight", "bias")
#: The six (module, kind) groups, in coding order; one step and one exp-Golomb order each.
NN_GROUPS: Final = tuple((module, kind) for module in NN_MODULES for kind in NN_KINDS)
#: Largest |q| of a quantised parameter (a step whose integers exceed it is not usable).
NN_Q_MAX: Final = 1 << 15
#: Largest quantisation step exponent: step = 2^-e, e in 0..31.
MAX_STEP_EXPONENT: Final = 31
#: Largest exp-Golomb order.
MAX_EG_ORDER: Final = 12
#: Largest |value| the exp-Golomb coder accepts (codes stay under 64 bits).
EG_MAX_ABS: Final = 1 << 30
#: Longest exp-Golomb code of a parameter with |q| <= NN_Q_MAX: order 0, q = -2^15, so
#: u = 2^16, and the code is 2 * floor(log2(u + 1)) + 1 = 33 bits.
MAX_EG_BITS_PER_PARAM: Final = 2 * NN_Q_MAX.bit_length() + 1

# --------------------------------------------------------------------------------------------
# Decoder limits: they bound what a (possibly hostile) header can make us allocate.

MAX_WIDTH: Final = 16384
MAX_HEIGHT: Final = 16384
MIN_BIT_DEPTH: Final = 8
MAX_BIT_DEPTH: Final = 16
MAX_N_GRIDS: Final = 10
MAX_N_CTX_ROWCOL: Final = 4
MAX_COARSER_CONTEXTS: Final = 3
MAX_IFCE_FEATURES: Final = 8
MAX_HYPER_GRIDS: Final = 4
MAX_ARM_HIDDEN_LAYERS: Final = 8
MAX_ARM_WIDTH: Final = 64
MAX_SYNTHESIS_LAYERS: Final = 16
MAX_SYNTHESIS_CHANNELS: Final = 128
MAX_SYNTHESIS_KERNEL: Final = 15
MIN_UPSAMPLING_KERNEL: Final = 4
MAX_UPSAMPLING_KERNEL: Final = 16
MAX_PRECONCAT_KERNEL: Final = 15
#: Channels the synthesis must produce (3 planes for every frame format).
OUT_CHANNELS: Final = 3
#: Longest frame-rate text kept in the header (characters: digits and one ".").
MAX_FPS_CHARS: Final = 16
#: Largest section length (it was a u32 field in version 1; ``ue`` codes keep that bound).
MAX_SECTION_BYTES: Final = (1 << 32) - 1
#: Longest zero prefix of a header ``ue`` code: 32 carries any value up to 2^33 − 2, enough for
#: a section length; a longer prefix is corrupt and refused before it is walked.
MAX_UE_ZEROS: Final = 32
