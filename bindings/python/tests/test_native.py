"""Finding the native files: the bundled copy in llmrt/_native before LLMRT_LIB and a checkout,
error messages that list where they looked, and the `llmrt` command that runs the program."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import llmrt
from llmrt import _lib

#: The console script pip installed beside this interpreter.
COMMAND = Path(sys.executable).parent / "llmrt"


@pytest.fixture(scope="module")
def library():
    try:
        return llmrt.library_path()
    except llmrt.LibraryNotFoundError as e:
        pytest.fail(f"the llmrt library is needed (cargo build --release, or set LLMRT_LIB):\n{e}")


def _copy_of_the_package(root, bundled):
    """A copy of the installed package under root/site whose _native holds links to `bundled`."""
    package = root / "site" / "llmrt"
    shutil.copytree(
        Path(llmrt.__file__).resolve().parent,
        package,
        ignore=shutil.ignore_patterns("_native", "__pycache__"),
    )
    (package / "_native").mkdir()
    for path in bundled:
        (package / "_native" / path.name).symlink_to(path)
    return package


def _run(code, root, **env):
    environ = {k: v for k, v in os.environ.items() if k != "LLMRT_LIB"}
    environ.update(env, PYTHONPATH=str(root / "site"))
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, cwd=root, capture_output=True, text=True
    )


def test_the_bundled_library_comes_before_llmrt_lib(tmp_path, library):
    package = _copy_of_the_package(tmp_path, [library])
    out = _run("import llmrt; print(llmrt.library_path())", tmp_path, LLMRT_LIB="/nowhere/x.so")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == package / "_native" / _lib.LIBRARY_FILE


def test_the_not_found_message_lists_the_bundled_place_and_llmrt_lib(tmp_path):
    package = _copy_of_the_package(tmp_path, [])
    missing = tmp_path / "nowhere" / _lib.LIBRARY_FILE
    code = (
        "import llmrt\ntry:\n    llmrt.version()\n"
        "except llmrt.LibraryNotFoundError as e:\n    print(e)\n"
    )
    out = _run(code, tmp_path, LLMRT_LIB=str(missing))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"  {package / '_native' / _lib.LIBRARY_FILE}: not found" in lines
    assert f"  {missing}: not found" in lines
    # With LLMRT_LIB set, no checkout is searched: those two are all.
    assert sum(line.endswith(": not found") for line in lines) == 2, out.stdout


def test_the_llmrt_command_runs_the_program_beside_the_library(library):
    program = library.parent / _lib.BINARY_FILE
    if not program.is_file():
        pytest.fail(f"{program} is missing: build it with `cargo build --release`")
    assert COMMAND.is_file(), f"pip did not install the llmrt command at {COMMAND}"
    env = dict(os.environ, LLMRT_LIB=str(library))
    out = subprocess.run([COMMAND, "--version"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"llmrt {llmrt.version()}\n"


def test_the_llmrt_command_says_where_it_looked_for_the_program(tmp_path):
    missing = tmp_path / "nowhere" / _lib.LIBRARY_FILE
    env = dict(os.environ, LLMRT_LIB=str(missing))
    out = subprocess.run([COMMAND, "--version"], env=env, capture_output=True, text=True)
    assert out.returncode == 127, out
    assert out.stdout == ""
    assert str(missing.parent / _lib.BINARY_FILE) in out.stderr
    assert str(_lib.NATIVE_DIR / _lib.BINARY_FILE) in out.stderr
