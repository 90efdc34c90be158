"""What the terminal shows when a cell fails, an image has alpha, or the user presses Ctrl-C."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from reliability_helpers import TOY, run_cli, toy_sweep
from runner.runner_helpers import CHILD_ENV
from toy_method import ToyAutoencoder

import adbench
from adbench import cli
from adbench.data import UnifiedDataModule, dataset, load_index
from adbench.data.dataset import AlphaChannelWarning, load_image
from adbench.runner import plan
from adbench.runner.rundir import ERROR, LOCK, cell_dir, read_json

CLI = "import sys; from adbench.cli import main; sys.exit(main(sys.argv[1:]))"


def test_a_truncated_image_is_one_terminal_line_per_failed_cell(
    small_root: Path, tmp_path: Path, plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(shutil.copytree(small_root, tmp_path / "data"))
    sweep = toy_sweep(root, num_workers=2)  # the error comes from a DataLoader worker process
    _, cells = plan(sweep)
    shared = cells[0].categories[0]  # in every cell
    broken = sorted((root / shared / "test" / "good").glob("*.png"))[0]
    broken.write_bytes(broken.read_bytes()[:70])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "run"
    argv = ("run", str(path), "--out", str(out), "--no-progress", "--no-report", "--plugin", TOY)
    code, stdout, err = run_cli(capsys, *argv)

    assert code == 1 and "Traceback" not in stdout + err
    message = (
        f"cannot read image {broken}: image file is truncated. The file is missing, truncated "
        "or not an image; restore it from the original download (or remove it and its split "
        "entry)."
    )
    for cell in cells:
        (line,) = [line for line in err.splitlines() if cell.id in line]
        assert line.endswith(
            f"failed: DatasetFormatError: {message} (traceback in {cell_dir(out, cell.id) / ERROR})"
        )
        error = read_json(cell_dir(out, cell.id) / ERROR)
        assert error["message"] == message
        assert "Caught DatasetFormatError in DataLoader worker process" in error["traceback"]
        log = (cell_dir(out, cell.id) / "run.log").read_text()
        assert "Traceback (most recent call last)" in log and message in log


def _rgba(path: Path) -> np.ndarray:
    """A 2 x 2 RGBA image: transparent white, half-transparent orange, opaque, faint green."""
    pixels = np.array(
        [[[255, 255, 255, 0], [200, 100, 50, 128]], [[10, 20, 30, 255], [0, 255, 0, 64]]],
        dtype=np.uint8,
    )
    Image.fromarray(pixels, "RGBA").save(path)
    return pixels


def test_rgba_images_are_composited_on_black_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataset, "_alpha_warned", False)  # this process has warned of none yet
    first, second, plain = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "rgb.png"
    pixels = _rgba(first)
    _rgba(second)
    Image.fromarray(pixels[..., :3], "RGB").save(plain)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = [load_image(path, (2, 2)) for path in (first, second, plain)]
    said = [w for w in caught if issubclass(w.category, AlphaChannelWarning)]
    assert len(said) == 1 and str(first) in str(said[0].message)
    assert "composites such images on black" in str(said[0].message)

    alpha = pixels[..., 3:].astype(np.float64) / 255
    on_black = pixels[..., :3] * alpha  # the compositing rule, computed independently
    for image in images[:2]:
        loaded = image.numpy().transpose(1, 2, 0) * 255
        np.testing.assert_allclose(loaded, on_black, atol=1)
    np.testing.assert_array_equal(images[2].numpy().transpose(1, 2, 0) * 255, pixels[..., :3])


class _Interrupted(ToyAutoencoder):
    """Ctrl-C during its first training step (SIGINT raises KeyboardInterrupt there)."""

    def training_step(self, batch, batch_idx):
        raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["in a command", "in Lightning's fit"])
def test_ctrl_c_is_one_line(
    where: str,
    small_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def command(args: object) -> int:
        if where == "in a command":
            raise KeyboardInterrupt
        method = _Interrupted({"data": {"image_size": 32}})  # Lightning turns it into exit(1)
        index = load_index("synthetic", small_root)
        datamodule = UnifiedDataModule(index, image_size=32, batch_size=4)
        adbench.fit(method, datamodule, accelerator="cpu", max_steps=2, enable_progress_bar=False)
        return 0

    monkeypatch.setattr(cli, "_list", command)
    handler = signal.getsignal(signal.SIGINT)
    try:
        code, out, err = run_cli(capsys, "list")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT once interrupted
    assert (code, out) == (130, "") and err.endswith("adbench: interrupted\n")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "Detected KeyboardInterrupt" not in caplog.text  # Lightning's notice is dropped


@pytest.mark.slow
def test_ctrl_c_during_training_ends_the_run_with_one_line(
    small_root: Path, tmp_path: Path
) -> None:
    """The real signal, sent to ``adbench run`` while a cell trains (about 20 s)."""
    slow = {"name": "toy", "preset": "tiny", "set": {"step_sleep_s": 0.2}}
    trainer = {"accelerator": "cpu", "max_steps": 200}  # 40 s unless interrupted
    sweep = toy_sweep(small_root, methods=[slow], categories=[1], trainer=trainer)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "run"
    argv = [str(path), "--out", str(out), "--no-progress", "--no-report", "--plugin", TOY]
    run = subprocess.Popen(
        [sys.executable, "-c", CLI, "run", *argv],
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("cells/*/logs")):  # Lightning's logger: training has started
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1] == "adbench: interrupted"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not list(out.glob(f"cells/*/{LOCK}"))  # the cell is free for the next run
