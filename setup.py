"""Only the optional C part of kdns lives here; everything else is in pyproject.toml.

kdns._udpbatch batches the UDP hot loop's system calls (recvmmsg/sendmmsg) on Linux. It is
optional: where it cannot be built (no compiler, not Linux), pip installs kdns without it
and kdns runs the same loop in Python.
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kdns._udpbatch", ["kdns/_udpbatch.c"], optional=True, extra_compile_args=["-O2"])
    ]
    if sys.platform.startswith("linux")
    else [],
)
