"""``run_python``: run a snippet of Python in a separate, limited interpreter process.

Each call writes the code to a fresh temporary directory and runs ``python -I`` there (isolated mode: no
user site-packages, no ``PYTHON*`` variables, the script's directory not on the path), in a new session,
with a minimal environment and these limits, set by ``resource.setrlimit`` in the child before ``exec``:

- wall time: the process group is killed after ``timeout_s`` (CPU time is capped a little above that too),
- memory: ``RLIMIT_AS`` of ``memory_mb`` (allocations beyond it raise ``MemoryError``),
- files: ``RLIMIT_FSIZE`` caps every file it writes, its captured stdout/stderr included; no core dumps.

stdout and stderr are returned, each truncated to ``max_output_chars``.

Network: with ``allow_network=False`` (the default) a bootstrap replaces ``socket.socket``,
``socket.create_connection``, ``socket.getaddrinfo`` and ``socket.socketpair`` before the snippet runs, so
ordinary libraries (``urllib``, ``http.client``, ``requests``) fail with ``OSError``. This guards against
accidents, not attacks: code can still reach ``_socket`` through ``socket``'s module globals, use ``ctypes``,
or start other programs. It is not a sandbox either: the process runs as the same user and can read what
that user can. Run untrusted code inside a container or VM with no network (for example
``docker run --network none``).
"""

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from pipo_agent.errors import ToolConfigError, ToolTimeoutError
from pipo_agent.toolset import Tool

__all__ = ["python_runner_tool"]

_SNIPPET: Final = "snippet.py"
_NETWORK_ENV: Final = "PIPO_SANDBOX_NETWORK"
_GRACE_S: Final = 5.0  # the agent-level timeout leaves the runner time to kill the process and report

# Runs first in the child: block the network unless allowed, then run the snippet as __main__ and print
# its traceback without this bootstrap's frame.
_BOOTSTRAP: Final = f"""
import os, socket, sys, traceback

def _block_network():
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled for this code")

    class NoNetworkSocket(socket.socket):
        def __init__(self, family=-1, *args, **kwargs):
            if family != socket.AF_UNIX:
                refuse()
            super().__init__(family, *args, **kwargs)

    socket.socket = NoNetworkSocket
    socket.create_connection = socket.getaddrinfo = socket.socketpair = refuse

if os.environ.get({_NETWORK_ENV!r}) != "1":
    _block_network()
path = sys.argv[1]
with open(path, encoding="utf-8") as source:
    code = compile(source.read(), path, "exec")
sys.argv = sys.argv[1:]
try:
    exec(code, {{"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}})
except SystemExit:
    raise
except BaseException as exc:
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
    sys.exit(1)
"""


def python_runner_tool(
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_output_chars: int = 10_000,
    max_file_mb: int = 16,
    allow_network: bool = False,
    python: str = sys.executable,
) -> Tool:
    """A ``run_python(code)`` tool with the limits described in the module docstring."""
    if timeout_s <= 0 or memory_mb < 64 or max_output_chars < 1 or max_file_mb < 1:
        raise ToolConfigError(
            "python_runner needs timeout_s > 0, memory_mb >= 64 (the interpreter needs some), "
            "max_output_chars >= 1 and max_file_mb >= 1"
        )
    limits = _Limits(timeout_s, memory_mb * 2**20, max_file_mb * 2**20)
    network = "1" if allow_network else "0"

    def run_python(code: str) -> str:
        """Run a Python program in a fresh interpreter and return its exit code, stdout and stderr.
        Print what you want to see; files it writes are discarded afterwards.

        Args:
            code: The complete program, e.g. "print(sum(range(10)))".
        """
        return _run(code, python, limits, network, max_output_chars)

    description = (
        f"Run a Python program in a fresh interpreter (limits: {timeout_s:g} s, {memory_mb} MB"
        f"{'' if allow_network else ', no network'}) and return its exit code, stdout and stderr."
    )
    return Tool.from_function(run_python, description=description, timeout=timeout_s + _GRACE_S)


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    memory_bytes: int
    file_bytes: int

    def apply(self) -> None:
        """Runs in the child between fork and exec (``preexec_fn``): a few system calls, nothing more."""
        cpu_s = int(self.timeout_s) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run(code: str, python: str, limits: _Limits, network: str, max_chars: int) -> str:
    with (
        tempfile.TemporaryDirectory(prefix="pipo-python-") as workdir,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        Path(workdir, _SNIPPET).write_text(code, encoding="utf-8")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            _NETWORK_ENV: network,
        }
        # preexec_fn is documented as unsafe in threaded programs (a lock held by another thread at fork
        # time may never be released in the child); ours only calls setrlimit, which takes no Python lock.
        process = subprocess.Popen(
            [python, "-I", "-c", _BOOTSTRAP, _SNIPPET],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, so that killing it reaches its children too
            preexec_fn=limits.apply,
        )
        try:
            returncode = process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            partial = _report(None, _read(out, max_chars), _read(err, max_chars))
            raise ToolTimeoutError(
                f"the program ran longer than {limits.timeout_s:g} s and was stopped. Output so far:\n{partial}"
            ) from None
        _kill_group(process)  # background processes it may have left behind
        return _report(returncode, _read(out, max_chars), _read(err, max_chars))


def _kill_group(process: "subprocess.Popen[bytes]") -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read(file: BinaryIO, max_chars: int) -> str:
    """The file's text, cut to ``max_chars`` characters with a note saying so."""
    total = file.seek(0, os.SEEK_END)
    file.seek(0)
    data = file.read(4 * max_chars)  # a UTF-8 character takes at most 4 bytes
    text = data.decode("utf-8", errors="replace")
    if len(text) <= max_chars and len(data) == total:
        return text
    return f"{text[:max_chars]}\n[... output truncated: {total} bytes in all, first {max_chars} characters shown]"


def _report(returncode: int | None, stdout: str, stderr: str) -> str:
    lines = []
    if returncode is not None:
        status = f"exit code: {returncode}"
        if -returncode in signal.valid_signals():
            status += f" (killed by {signal.Signals(-returncode).name})"
        lines.append(status)
    lines.append(f"stdout:\n{stdout}" if stdout else "stdout: (empty)")
    if stderr:
        lines.append(f"stderr:\n{stderr}")
    return "\n".join(lines)
