"""`python -m tunec ARGS`: runs the binary installed with this package, as `tunec ARGS` would."""

from __future__ import annotations

import os
import subprocess
import sys

from tunec._binary import find_binary


def main() -> None:
    binary = find_binary()
    if sys.platform == "win32":
        sys.exit(subprocess.run([binary, *sys.argv[1:]], check=False).returncode)
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    main()
