"""Syllabus: the Phi recipe for small language models, end to end."""

import os

# Intel MKL's default float32 GEMM rounds differently with the memory alignment of its inputs,
# which depends on whatever the process allocated before: a training stage resumed in a new
# process then drifts from an uninterrupted one by a few ULPs (measured: a resumed 2m-model run
# differed at 5 of 30 steps). Conditional Numerical Reproducibility ("AUTO": the best code path
# for this CPU, with alignment-independent results) removes that for MKL (other kernels can
# still round by alignment, far less); it must be set before MKL loads, i.e. before torch is
# imported. A value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO")

__version__ = "0.1.0"
