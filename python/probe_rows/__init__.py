"""probe-rows from Python: where the installed stage binaries are, and which split a key is in.

The stages themselves are the binaries this wheel puts on PATH (``probe-group``,
``probe-split``, ...) and the ``probe-pipeline`` command runs the whole job; run them with
``subprocess``. This module only adds what a Python caller cannot get from a command:

>>> import probe_rows
>>> probe_rows.split_of("192.0.2.1")                     # train=0.9,test=0.1, seed 0
'train'
>>> probe_rows.split_of("192.0.2.1", ratios="a=0.5,b=0.3,c=0.2")
'c'
>>> probe_rows.bin_dir()                                 # doctest: +SKIP
PosixPath('/venv/bin')
"""

from probe_rows._bin import bin_dir, find_bin
from probe_rows._split import key_bytes, split_of, unit_of

__all__ = ["bin_dir", "find_bin", "key_bytes", "split_of", "unit_of"]
