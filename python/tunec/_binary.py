"""Where the `tunec` binary of this installation is.

The wheel installs the binary as a script, beside the interpreter's other scripts (`<venv>/bin`),
in the user scheme's scripts folder (`pip install --user`), or in `<target>/bin` (`pip install
--target`). The binary on `PATH` is never used: it may be another version than this module's.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

_NAME = "tunec" + (sysconfig.get_config_var("EXE") or "")


def _candidates() -> list[Path]:
    folders = [sysconfig.get_path("scripts")]
    user_scheme = sysconfig.get_preferred_scheme("user")
    folders.append(sysconfig.get_path("scripts", scheme=user_scheme))
    folders.append(str(Path(__file__).resolve().parent.parent / "bin"))
    return [Path(folder) / _NAME for folder in folders]


def find_binary() -> str:
    """The path of the `tunec` binary installed with this package.

    Raises `FileNotFoundError` when it is not where pip puts it (the module was imported from a
    source checkout, or the script was removed); pass `binary=` to the functions of this module to
    use another build, such as `target/debug/tunec` of a checkout.
    """
    candidates = _candidates()
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"the tunec binary of this installation is not in {tried} (Python {sys.executable}); "
        "reinstall the wheel (`pip install --force-reinstall tunec`) or pass binary= a tunec you built"
    )
