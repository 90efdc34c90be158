"""``benchmarks/perf/common.py`` (random batches, timing, fresh processes, sweeps) and
``results_file.py`` (the machine, the results files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from toy_method import ToyAutoencoder, ToyConfig

from adbench.provenance import environment
from benchmarks.perf import common, gpu_check, results_file


def test_a_random_batch_is_normal_with_cycling_categories() -> None:
    batch = common.random_batch(5, 16, 3, start=7, generator=torch.Generator().manual_seed(1))
    assert batch.image.shape == (5, 3, 16, 16) and batch.image.dtype == torch.float32
    assert 0.0 <= float(batch.image.min()) and float(batch.image.max()) <= 1.0
    assert batch.mask.shape == (5, 1, 16, 16) and not batch.mask.any()
    assert batch.label.dtype == torch.int64 and not batch.label.any()
    assert batch.index.tolist() == [7, 8, 9, 10, 11]
    assert batch.category.tolist() == [1, 2, 0, 1, 2]  # (7 + i) % 3
    same = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(batch.image, same)


def test_random_batches_continue_the_index_and_a_normal_batch_is_of_category_0() -> None:
    batches = common.random_batches(3, 2, 8, 4, start=10)
    assert [b.index.tolist() for b in batches] == [[10, 11], [12, 13], [14, 15]]
    assert [b.category.tolist() for b in batches] == [[2, 3], [0, 1], [2, 3]]
    batch = common.normal_batch(torch.ones(2, 3, 4, 4, dtype=torch.float64))
    assert batch.category.tolist() == [0, 0] and batch.index.tolist() == [0, 1]
    assert batch.mask.shape == (2, 1, 4, 4)


def test_the_random_datamodule_is_the_same_on_every_call() -> None:
    data = common.random_datamodule(3, 8, 2, train_batches=2, test_batches=1)
    assert data.categories == ["category0", "category1", "category2"]
    train = list(data.train_dataloader())
    assert [b.index.tolist() for b in train] == [[0, 1], [2, 3]]
    assert [b.index.tolist() for b in data.predict_dataloader()] == [[4, 5]]
    again = list(common.random_datamodule(3, 8, 2, 2, 1).train_dataloader())
    assert all(torch.equal(a.image, b.image) for a, b in zip(train, again, strict=True))


def test_grid_varies_the_last_axis_fastest() -> None:
    assert common.grid(preset=["tiny", "paper"], k=[1, 15]) == [
        {"preset": "tiny", "k": 1},
        {"preset": "tiny", "k": 15},
        {"preset": "paper", "k": 1},
        {"preset": "paper", "k": 15},
    ]


def test_seconds_per_call_warms_up_once() -> None:
    calls = []
    seconds = common.seconds_per_call(lambda: calls.append(1), 4, "cpu")
    assert len(calls) == 5 and seconds >= 0.0


@pytest.mark.parametrize(
    ("precision", "dtype", "enabled"),
    [
        ("fp32", torch.float32, False),
        ("32-true", torch.float32, False),
        ("bf16", torch.bfloat16, True),
        ("bf16-mixed", torch.bfloat16, True),
        ("fp16", torch.float16, True),
        ("16-mixed", torch.float16, True),
    ],
)
def test_autocast_follows_the_precision(precision: str, dtype: torch.dtype, enabled: bool) -> None:
    with common.autocast("cpu", precision):
        assert torch.is_autocast_enabled("cpu") == enabled
        if enabled:
            assert torch.get_autocast_dtype("cpu") == dtype


def test_a_training_step_without_a_trainer_updates_the_weights() -> None:
    torch.manual_seed(0)
    method = ToyAutoencoder(ToyConfig(width=4))
    before = [p.detach().clone() for p in method.parameters()]
    steps: list[int] = []
    step = common.training_step(
        method,
        common.random_batch(2, 16, 1),
        torch.optim.SGD(method.parameters(), lr=0.1),
        "cpu",
        "fp32",
        after=steps.append,
    )
    step()
    step()  # the method's own ``self.log`` call is dropped, not an error
    assert steps == [1, 2]
    assert any(not torch.equal(a, b) for a, b in zip(before, method.parameters(), strict=True))


def test_timed_fit_times_every_training_and_predict_batch() -> None:
    method = ToyAutoencoder(ToyConfig(width=4))
    data = common.random_datamodule(2, 16, 2, train_batches=3, test_batches=2)
    timed = common.timed_fit(method, data, 2, "cpu", predict=True)
    assert len(timed.train) == 2 and len(timed.test) == 2  # max_steps stops after 2 of 3
    assert timed.trainer.global_step == 2
    assert timed.fit_s >= sum(timed.train) > 0.0


def test_a_fresh_process_gets_the_environment_and_reports_errors() -> None:
    env = {**os.environ, "PERF_COMMON_MARK": "7"}
    assert common.run_isolated(os.getenv, env, key="PERF_COMMON_MARK") == "7"
    assert os.getenv("PERF_COMMON_MARK") is None
    rows = common.measure_each(common.peak_memory, [{"device": "cpu"}, {"device": "nowhere"}])
    assert rows[0]["peak_rss_GB"] > 0.0 and rows[0]["peak_gpu_GB"] is None
    assert rows[1]["device"] == "nowhere" and "nowhere" in rows[1]["error"]


def test_results_are_written_atomically_with_their_provenance(tmp_path: Path) -> None:
    data = {"header": "h", "rows": [{"k": 1, "train_img_s": 2.5}]}
    results_file.write_results(tmp_path / "sub" / "bench", data, "| a |\n|---|\n| 1 |\n")
    stored = json.loads((tmp_path / "sub" / "bench.json").read_text())
    stamp = stored.pop("provenance")
    assert stored == data
    assert set(stamp) == {"commit", "dirty", "measured_at", "load_average", "machine"}
    assert len(stamp["commit"]) == 40 and len(stamp["load_average"]) == 3
    text = (tmp_path / "sub" / "bench.md").read_text()
    assert text == f"Measured at {results_file.describe(stamp)}.\n\n| a |\n|---|\n| 1 |\n"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["bench.json", "bench.md"]


def test_write_tables_heads_each_non_empty_table_when_there_are_several(tmp_path: Path) -> None:
    rows = [{"k": 1, "x": 0.5}, {"k": 15, "x": 0.25}]
    results_file.write_tables(tmp_path / "one", "Bench", {"rows": rows})
    stored = json.loads((tmp_path / "one.json").read_text())
    assert stored["rows"] == rows and stored["header"].startswith("Bench, measured ")
    assert "###" not in (tmp_path / "one.md").read_text()
    results_file.write_tables(tmp_path / "two", "Bench", {"first": rows, "second": []})
    text = (tmp_path / "two.md").read_text()
    assert "### first" in text and "### second" not in text
    assert json.loads((tmp_path / "two.json").read_text())["second"] == []


def test_the_machine_description_comes_from_the_captured_environment() -> None:
    env = environment()
    described = results_file.machine()
    assert described.startswith(f"{env['cpu']} ({env['cpu_count']} cores, ")
    assert f"torch {torch.__version__}" in described
    assert described.endswith(", ".join(env["gpus"]) or "no GPU")
    mode = gpu_check.Mode(True, 1, 2, (1,), 1)
    assert gpu_check.environment(mode) == {
        "mode": "dry run (CPU)",
        "device": "cpu",
        "gpus": len(env["gpus"]),
        "torch": torch.__version__,
        "cuda": env["cuda"],
        "cpu_threads": torch.get_num_threads(),
    }


def test_with_preset_keeps_the_registered_methods_that_have_it() -> None:
    assert common.with_preset("tiny", ["naive", "no_such_method", "mddnet"]) == ["naive", "mddnet"]
    assert "mddnet" in common.with_preset("tiny")


def test_a_tiny_sweep_names_its_methods_data_and_options(tmp_path: Path) -> None:
    sweep = common.tiny_sweep("s", ["naive"], tmp_path, [2, 4], {"devices": 1}, seeds=[0, 1])
    assert sweep["methods"] == [{"name": "naive", "preset": "tiny"}]
    assert sweep["datasets"][0]["synthetic"]["n_categories"] == 4
    assert sweep["seeds"] == [0, 1] and sweep["launcher"] == {"name": "local"}
