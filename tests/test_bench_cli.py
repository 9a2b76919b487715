"""`pioneer-tui bench adaptft` refuses a bad configuration with one line, before any work."""

from __future__ import annotations

import pytest

from pioneer_tui.cli import main


@pytest.mark.parametrize("args,message", [
    (["--method", "lora"], "naive arm continues training"),
    (["--arms", "naive_cumulative,bogus"], "unknown arm(s) bogus"),
])
def test_bad_arms_or_method_fail_with_one_line(tmp_path, capsys, args, message):
    code = main(["--workspace", str(tmp_path / "ws"), "bench", "adaptft", "--dataset", str(tmp_path / "absent.jsonl"),
                 *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ws" / "bench").exists()
