"""Helpers of the reliability tests: tiny toy sweeps, file snapshots, the CLI in-process."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from runner import runner_helpers

from adbench.cli import main

TOY = runner_helpers.TOY  # the toy method of the runner tests
NAN_TOY = str(Path(__file__).with_name("nan_plugin.py"))
# tests that find a temporary file's name from its descriptor
LINUX_FDS = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd")


def toy_sweep(root: Path, **changes: Any) -> dict[str, Any]:
    """A sweep of the toy method on the synthetic set at ``root``: k = 1 and 2, two steps each."""
    defaults = {
        "name": "reliability",
        "categories": [1, 2],
        "checkpoints": False,
        "trainer": {"accelerator": "cpu", "max_steps": 2},
    }
    return runner_helpers.make_sweep(root, **{**defaults, **changes})


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``adbench ARGV`` in this process: (exit code, stdout, stderr); argparse exits too."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def killed_while_writing(file_name: str) -> str:
    """Python code of an `adbench` run that SIGKILLs itself halfway through writing the second
    file named ``file_name`` (an atomic write's draft ``.<file_name>.*``); arguments: the CLI's."""
    return textwrap.dedent(f"""
        import os, signal, sys
        import adbench.io as io
        real, seen = io.os.fdopen, []

        class Torn:
            def __init__(self, handle):
                self.handle = handle
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                self.handle.close()
            def write(self, data):
                self.handle.write(data[: len(data) // 2])
                self.handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        def fdopen(fd, *args, **kwargs):
            handle = real(fd, *args, **kwargs)
            if os.readlink(f"/proc/self/fd/{{fd}}").split("/")[-1].startswith(".{file_name}."):
                seen.append(fd)
                if len(seen) == 2:
                    return Torn(handle)
            return handle

        io.os.fdopen = fdopen
        from adbench.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
