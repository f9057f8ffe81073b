"""TensorFlow without its start-up chatter.

TensorFlow 2.21 prints C++ log lines while it is imported ("All log messages before absl::InitializeLog() is
called are written to STDERR", "oneDNN custom operations are on", the CPU feature guard), twice, straight to
file descriptor 2: they are written before absl's logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not
reach them and no environment variable does. :func:`import_tensorflow` imports TensorFlow with descriptor 2
pointed at a temporary file, then writes back every line that is not one of those notices (a real error during
the import still shows). ``TF_CPP_MIN_LOG_LEVEL=2`` keeps the later C++ INFO and WARNING lines away.
"""

from __future__ import annotations

import os
import sys
import tempfile

NOISE = (
    b"All log messages before absl::InitializeLog()",
    b"oneDNN custom operations are on",
    b"This TensorFlow binary is optimized to use available CPU instructions",
    b"To enable the following instructions:",
    b"Could not find cuda drivers",
    b"Unable to register cu",
    b"TF-TRT Warning",
)


def is_noise(line: bytes) -> bool:
    return any(n in line for n in NOISE)


def import_tensorflow(verbose: bool = False) -> None:
    """Imports TensorFlow (and Keras) once; without ``verbose`` its start-up notices are dropped."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    if verbose:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp:
                if not is_noise(line):
                    os.write(2, line)
