"""The ``llmrt`` command that pip installs: runs the llmrt program bundled in the package (or the
one :func:`llmrt._lib.find_binary` finds), so a venv with the wheel has the CLI on its PATH."""

from __future__ import annotations

import os
import subprocess
import sys

from ._errors import LibraryNotFoundError
from ._lib import find_binary


def main() -> int:
    try:
        program = str(find_binary())
    except LibraryNotFoundError as e:
        print(f"llmrt: {e}", file=sys.stderr)
        return 127
    if sys.platform == "win32":
        # No exec there that keeps the console and the exit code: run it as a child.
        return subprocess.call([program, *sys.argv[1:]])
    # Replacing this process leaves signals, the terminal and the exit status to the program.
    os.execv(program, [program, *sys.argv[1:]])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
