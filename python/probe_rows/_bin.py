"""Where pip put this wheel's binaries: the scripts folder of the scheme it was installed into."""

import os
import sysconfig
from pathlib import Path
from typing import List

# The binary every install holds; a folder with it holds the others too.
_PROBE = "probe-group"


def _candidates() -> List[Path]:
    # The install's own scheme first: a notebook kernel may run a venv's python without that
    # venv's bin/ on PATH, so PATH is not asked.
    dirs = [Path(sysconfig.get_path("scripts"))]
    user = "nt_user" if os.name == "nt" else "posix_user"
    if user in sysconfig.get_scheme_names():
        dirs.append(Path(sysconfig.get_path("scripts", scheme=user)))
    # `pip install --target DIR` puts the package in DIR and the binaries in DIR/bin.
    dirs.append(Path(__file__).absolute().parent.parent / "bin")
    return dirs


def bin_dir() -> Path:
    """The folder holding this install's probe-rows binaries (``probe-group``, ...).

    Raises FileNotFoundError naming the folders looked in when there is none (a wheel
    installed without its scripts, or a source tree imported without installing).
    """
    exe = _PROBE + (".exe" if os.name == "nt" else "")
    tried = _candidates()
    for d in tried:
        if os.access(d / exe, os.X_OK):
            return d
    raise FileNotFoundError(
        f"{_PROBE} not found in {', '.join(str(d) for d in tried)}; reinstall with `pip install probe-rows`"
    )


def find_bin(name: str) -> Path:
    """The path of one installed binary, like ``find_bin("probe-split")``."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{name} not found beside {_PROBE} in {path.parent}")
    return path

