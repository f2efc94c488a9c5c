"""The optional C accelerator for `punch server` (punch/_fastpath.c); everything else is in pyproject.toml.

optional=True: where no compiler exists the build goes on without it and the server runs in pure Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("punch._fastpath", ["punch/_fastpath.c"], depends=["punch/_fastpath_sha256.h"], optional=True)
    ]
)
