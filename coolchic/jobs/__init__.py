"""Jobs: one input path → validate → read the first frame → encode → atomic outputs + report.

The unit that ``coolchic encode``, ``coolchic batch`` and the watch-folder daemon run, in four
modules whose imports flow one way (``run`` imports ``types`` and ``settings``; ``inputs``
stands alone; none of them imports an executor or :mod:`coolchic.batch`):

- :mod:`~coolchic.jobs.types`: job ids, requests, results, progress messages, error kinds;
- :mod:`~coolchic.jobs.settings`: :class:`EncodeSettings` and the fingerprint that tells an
  up-to-date output;
- :mod:`~coolchic.jobs.inputs`: which files are inputs and where their outputs go;
- :mod:`~coolchic.jobs.run`: running one job (:func:`encode_file`, :func:`run_job`).

The batch planner and runner are in :mod:`coolchic.batch`, the remote (Dask) form of a job in
:mod:`coolchic.executors.remote_task`. The names below are re-exported for callers that import
them from the package.
"""

from coolchic.jobs.inputs import (
    CHECKPOINT_DIR_NAME,
    IGNORED_NAMES,
    MAX_OUTPUT_STEM_BYTES,
    NAME_MAX_BYTES,
    PARTIAL_SUFFIXES,
    InputFile,
    checkpoint_path,
    find_inputs,
    is_ignored_name,
    is_input_name,
    output_paths,
    refusal_reason,
    remove_stale_temporaries,
)
from coolchic.jobs.run import (
    InputIdentity,
    device_is_cpu,
    encode_file,
    encode_frame,
    frame_size,
    job_memory_estimate,
    job_report,
    precheck_input,
    read_input,
    run_job,
    sha256_of,
    up_to_date_report,
    write_json_atomic,
    write_outputs,
)
from coolchic.jobs.settings import (
    FINGERPRINT_FIELDS,
    EncodeSettings,
    default_threads,
    usable_cpus,
)
from coolchic.jobs.types import (
    ErrorKind,
    JobFinished,
    JobId,
    JobListener,
    JobMessage,
    JobProgress,
    JobRequest,
    JobResult,
    JobStatus,
    SilentListener,
    classify_error,
    describe_error,
)

__all__ = [
    "CHECKPOINT_DIR_NAME",
    "FINGERPRINT_FIELDS",
    "IGNORED_NAMES",
    "MAX_OUTPUT_STEM_BYTES",
    "NAME_MAX_BYTES",
    "PARTIAL_SUFFIXES",
    "EncodeSettings",
    "ErrorKind",
    "InputFile",
    "InputIdentity",
    "JobFinished",
    "JobId",
    "JobListener",
    "JobMessage",
    "JobProgress",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "SilentListener",
    "checkpoint_path",
    "classify_error",
    "default_threads",
    "describe_error",
    "device_is_cpu",
    "encode_file",
    "encode_frame",
    "find_inputs",
    "frame_size",
    "is_ignored_name",
    "is_input_name",
    "job_memory_estimate",
    "job_report",
    "output_paths",
    "precheck_input",
    "read_input",
    "refusal_reason",
    "remove_stale_temporaries",
    "run_job",
    "sha256_of",
    "up_to_date_report",
    "usable_cpus",
    "write_json_atomic",
    "write_outputs",
]
