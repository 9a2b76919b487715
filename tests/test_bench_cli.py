"""`pioneer-tui bench adaptft` refuses a bad configuration with one line, before any work."""

from __future__ import annotations

import pytest

from pioneer_tui.cli import main


@pytest.mark.parametrize("args,message", [
    (["--dataset", "arithmetic", "--method", "linear_probe"], "naive arm continues training its checkpoint, which "
     "the bench supports for full and lora and qlora on the decoder, not linear_probe"),
    (["--dataset", "absent.jsonl", "--arms", "naive_cumulative,bogus"], "unknown arm(s) bogus"),
])
def test_bad_arms_or_method_fail_with_one_line(tmp_path, capsys, args, message):
    code = main(["--workspace", str(tmp_path / "ws"), "bench", "adaptft", "--quick", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ws" / "bench").exists()


def test_a_generation_dataset_gets_the_decoder_recipe_and_flags_still_override(tmp_path, monkeypatch):
    """The recipe's defaults follow the dataset's backend (the run itself is replaced: it trains for real)."""
    import engine.bench.adaptft as adaptft

    seen = []

    def stop(workspace, bench, config, log):
        seen.append((bench.task, config.recipe))
        raise SystemExit(0)

    monkeypatch.setattr(adaptft, "run_adaptft", stop)
    for extra in ([], ["--base-model", "/models/mine"], ["--method", "lora"]):
        with pytest.raises(SystemExit):
            main(["--workspace", str(tmp_path / "ws"), "bench", "adaptft", "--dataset", "arithmetic", "--quick", *extra])
    assert seen[0] == ("generation", adaptft.RECIPES["decoder"])
    assert seen[1][1] == {**adaptft.RECIPES["decoder"], "base_model": "/models/mine"}
    # LoRA takes its own point of the recipe curve, not full fine-tuning's tenfold smaller learning rate
    assert seen[2][1] == {**adaptft.RECIPES["decoder"], "method": "lora", "learning_rate": 1e-3, "lora_rank": 16,
                          "lora_alpha": 32}


def test_out_never_replaces_the_opened_workspace_or_a_folder_the_bench_did_not_make(tmp_path, capsys):
    """`--out` is replaced only where an earlier bench wrote; anything else is refused with one line and kept."""
    mine = tmp_path / "workspace"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "keep.txt").write_text("mine")
    code = main(["--workspace", str(mine), "bench", "adaptft", "--quick", "--dataset", "arithmetic",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "holds the workspace this command opened" in err and len(err.strip().splitlines()) == 1
    assert (mine / "notes" / "keep.txt").read_text() == "mine"

    other = tmp_path / "elsewhere"
    (other / "workspace").mkdir(parents=True)
    (other / "workspace" / "keep.txt").write_text("mine")
    code = main(["--workspace", str(tmp_path / "ws"), "bench", "adaptft", "--quick", "--dataset", "arithmetic",
                 "--out", str(other)])
    err = capsys.readouterr().err
    assert code != 0 and "is not an AdaptFT-Bench workspace" in err and len(err.strip().splitlines()) == 1
    assert (other / "workspace" / "keep.txt").read_text() == "mine"


def test_an_earlier_bench_workspace_is_replaced_by_an_empty_one(tmp_path, monkeypatch):
    import engine.bench.adaptft as adaptft

    seen = []

    def stop(workspace, bench, config, log):
        seen.append(sorted(p.name for p in workspace.iterdir()))
        raise SystemExit(0)

    monkeypatch.setattr(adaptft, "run_adaptft", stop)
    out = tmp_path / "out"
    for _ in range(2):
        with pytest.raises(SystemExit):
            main(["--workspace", str(tmp_path / "ws"), "bench", "adaptft", "--dataset", "arithmetic", "--quick",
                  "--out", str(out)])
        (out / "workspace" / "pioneer.db").write_text("the earlier run's")
    assert seen == [[".adaptft-bench"], [".adaptft-bench"]]
