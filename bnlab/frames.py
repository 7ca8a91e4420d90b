"""Kept only for tests/test_training.py, a training-side file changed on its own branch, which
reads `frame_from_store` from here; the study frame lives in bnlab.analysis.frames. Delete this
file once that test imports bnlab.analysis.frames."""
from bnlab.analysis.frames import frame_from_store  # noqa: F401
