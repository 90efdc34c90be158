"""The reliability cases and their outcomes, rendered as ``docs/reliability.md``.

Each case names the tests that check it; ``test_cases_table.py`` checks that they exist, that
every reliability test is listed, and that the page is up to date. Regenerate the page with::

    python tests/reliability/cases_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PAGE = REPO / "docs" / "reliability.md"
REL = "tests/reliability"


class Case(NamedTuple):
    """One failure a user can meet, and what adbench does about it."""

    case: str
    user_does: str
    adbench_does: str
    tests: tuple[str, ...]  # pytest node ids (without parameters)


CASES: tuple[Case, ...] = (
    Case(
        "Corrupt or truncated image (garbage bytes, cut PNG, cut JPEG)",
        "trains or evaluates on a dataset holding it",
        "`DatasetFormatError: cannot read image <path>: ...` when the sample is loaded, with the "
        "fix (restore the file); every other sample loads",
        (
            f"{REL}/test_bad_inputs.py::test_unreadable_image_names_its_path",
            "tests/data/test_formats.py::test_truncated_image_names_its_path",
        ),
    ),
    Case(
        "Empty image file",
        "reads the dataset root (any command)",
        "`DatasetFormatError` listing `empty image file: <path>` and the expected layout",
        (f"{REL}/test_bad_inputs.py::test_empty_image_file_is_refused_when_listing",),
    ),
    Case(
        "Image with an alpha channel (RGBA, LA, a transparent palette colour)",
        "trains or evaluates on a dataset holding it",
        "it is composited on black, never silently stripped of its alpha: a transparent pixel "
        "reads as black, a pixel of opacity a as a times its colour (masks alike); the first "
        "such file of a process gives one `AlphaChannelWarning: <path> has an alpha channel: "
        "adbench composites such images on black ...`",
        (
            f"{REL}/test_terminal_messages.py::test_rgba_images_are_composited_on_black_with_one_warning",
        ),
    ),
    Case(
        "Corrupt image inside a sweep",
        "`adbench run`, then restores the file and runs again",
        "only the cell using the image fails; its `error.json` names the file, the other cells "
        "finish; the re-run runs only that cell and leaves finished cells byte-identical",
        (f"{REL}/test_bad_inputs.py::test_corrupt_image_fails_only_its_cell",),
    ),
    Case(
        "Corrupt image read by a DataLoader worker process (`num_workers: 2`)",
        "`adbench run`",
        "one terminal line per failed cell: `cell <id> (...) failed: DatasetFormatError: cannot "
        "read image <path>: ... (traceback in <cell>/error.json)`; the traceback goes to the "
        "cell's `run.log` and `error.json`, whose `message` is the error's own (without "
        "PyTorch's worker traceback)",
        (
            f"{REL}/test_terminal_messages.py::test_a_truncated_image_is_one_terminal_line_per_failed_cell",
        ),
    ),
    Case(
        "Broken files found up front",
        "`adbench data check ROOT --format F`",
        "lists every unreadable image, missing mask and mask of the wrong size with its path; "
        "exit code 1",
        (
            "tests/data/test_check.py::test_every_problem_is_listed",
            "tests/data/test_check.py::test_check_command_exit_codes",
            f"{REL}/test_bad_inputs.py::test_corrupt_image_fails_only_its_cell",
        ),
    ),
    Case(
        "Wrong layout (root of another format, stray folders)",
        "`adbench run` or `load_index` on it",
        "exit code 2 before any cell runs: one message naming the root and the expected layout; "
        "nothing is written",
        (
            f"{REL}/test_bad_inputs.py::test_wrong_layout_stops_before_any_cell",
            "tests/data/test_formats.py::TestReaderContract::test_wrong_layout",
            "tests/data/test_formats.py::TestFolder::test_missing_mask_and_stray_folder",
        ),
    ),
    Case(
        "Mask of the wrong size",
        "trains or evaluates on a dataset holding it",
        "`DatasetFormatError: mask <path> is WxH px but its image <path> is WxH px` (never "
        "stretched onto the image), also from `adbench data prepare`, which then writes no "
        "manifest; `adbench data check` lists it too",
        (
            f"{REL}/test_bad_inputs.py::test_mask_of_the_wrong_size_names_mask_image_and_sizes",
            "tests/data/test_check.py::test_every_problem_is_listed",
        ),
    ),
    Case(
        "Mask of the wrong size, found before training",
        "`adbench run`, `adbench fit` or `load_index` on a dataset holding it",
        "exit code 2 before any cell runs, nothing written: `DatasetFormatError: masks of "
        "another size than their image in ROOT: N problem(s)` listing `mask <path> is WxH px but "
        "its image <path> is WxH px` (the first 20, then `... and N more`), read from the file "
        "headers when the dataset is loaded (about 0.15 ms per mask and its image); a file whose "
        "header cannot be read is left to the sample load; `adbench data check` lists them as "
        "`<mask>: mask size (W, H) differs from image size (W, H)` (with `--no-decode`, as the "
        "run does)",
        (
            f"{REL}/test_mask_sizes.py::test_wrong_mask_sizes_stop_the_run_before_any_cell",
            f"{REL}/test_mask_sizes.py::test_an_unreadable_header_is_left_to_the_sample_load",
        ),
    ),
    Case(
        "Unreadable source file during `adbench data prepare`",
        "builds a resized cache",
        "`DatasetFormatError` listing every file that failed; the other cached files are kept "
        "and no manifest is written, so the unfinished cache is never used",
        (
            "tests/data/test_cache.py::test_unreadable_sources_are_all_reported",
            "tests/data/test_cache.py::test_partial_cache_is_not_used",
        ),
    ),
    Case(
        "Interrupted `adbench data prepare` (SIGKILL)",
        "runs the same command again",
        "complete files are verified and kept, the rest is written; the manifest is written last",
        ("tests/data/test_cache.py::test_resume_after_kill",),
    ),
    Case(
        "Torn cache file or leftover temporary file",
        "runs `adbench data prepare` again",
        "the torn file is rewritten, the temporary file removed, every good file kept "
        "byte-identical",
        (f"{REL}/test_interrupts.py::test_prepare_resumes_over_a_torn_file_and_a_leftover_temp",),
    ),
    Case(
        "Two runners generating the same synthetic dataset",
        "starts two `adbench run` (or `adbench data synth`) whose synthetic root does not exist",
        "each process writes into its own hidden `.ROOT.partial-*` folder beside the root and "
        "renames it into place; the second to finish discards its copy and keeps the first's "
        "(byte-identical): both succeed, the set is complete and no partial folder is left. If "
        "the first wrote other settings: `DatasetFormatError: ROOT holds a synthetic dataset "
        "with other settings: ...`",
        (
            f"{REL}/test_data_races.py::test_two_processes_generate_one_complete_set",
            f"{REL}/test_data_races.py::test_the_loser_of_the_rename_keeps_the_winners_set",
        ),
    ),
    Case(
        "Synthetic dataset that differs from its `meta.json` (deleted category or image)",
        "`adbench data check ROOT --format synthetic`",
        "lists `category 'X' is listed in ROOT/meta.json but missing from ROOT` and "
        "`category 'X': 7 training images, ROOT/meta.json implies 8` (likewise test images); "
        "exit code 1",
        (f"{REL}/test_data_races.py::test_data_check_compares_a_synthetic_set_with_its_meta",),
    ),
    Case(
        "Category with no training images",
        "`adbench data check`, `adbench fit` or `adbench run` on a dataset with such a category",
        "`DatasetFormatError: category 'X' has no training images (normal train split empty) "
        "in ROOT; remove it or add images`: listed by `adbench data check` (exit code 1) and "
        "raised before training starts (`UnifiedDataModule.setup('fit')`), so each sweep cell "
        "holding the category fails with it in `error.json` and writes no result; scoring a "
        "trained model on it stays allowed",
        (
            f"{REL}/test_empty_training.py::test_category_without_training_images_is_refused",
            f"{REL}/test_empty_training.py::test_sweep_cell_with_an_untrained_category_fails",
        ),
    ),
    Case(
        "Method evaluated before it was fitted",
        "`adbench.evaluate` (or Lightning's `predict`/`test`) on a method just created",
        "`NotFittedError: <method> was never fitted: fit it first (adbench.fit(method, "
        "datamodule)) or load a fitted checkpoint (<Class>.from_checkpoint(path))`, for every "
        "registered method. A method is fitted once a fit ended, or loaded from a checkpoint "
        "written while fitting or from a fitted method's state dict (its `fitted` buffer travels "
        "with the weights; weights saved before it existed load as fitted). Mechanics mode "
        "(`random_weights=True`) scores the untrained weights with the warning `<method> was "
        "never fitted: scoring its untrained weights (random_weights=True, mechanics mode)`",
        (
            f"{REL}/test_unfitted_methods.py::test_every_method_refuses_to_score_before_fitting",
            f"{REL}/test_unfitted_methods.py::test_the_test_loop_refuses_too",
            f"{REL}/test_unfitted_methods.py::test_fitted_state_travels_with_checkpoints_and_state_dicts",
            f"{REL}/test_unfitted_methods.py::test_mechanics_mode_scores_an_unfitted_method_and_says_so",
        ),
    ),
    Case(
        "NaN or inf in an anomaly map or score",
        "evaluates a method",
        "`InvalidInputError` naming the sample index and its position in the batch; the batch "
        "leaves no trace in the metric state",
        ("tests/metrics/test_evaluator.py::test_non_finite_maps_name_the_sample",),
    ),
    Case(
        "Method that outputs NaN maps inside a sweep",
        "`adbench run`",
        "that cell fails (`InvalidInputError` in its `error.json`, naming the sample index, a row "
        "of the cell's `index.parquet`) and writes no result; other cells finish; no NaN reaches "
        "the results or the leaderboard",
        (f"{REL}/test_nan_maps.py::test_nan_maps_fail_their_cell_and_name_the_sample",),
    ),
    Case(
        "Runner killed (SIGKILL) during a cell",
        "runs the sweep again",
        "finished cells are skipped with byte-identical results; the interrupted cell is run again",
        ("tests/runner/test_processes.py::test_resume_after_kill",),
    ),
    Case(
        "Ctrl-C (SIGINT)",
        "presses Ctrl-C during any `adbench` command, training included",
        "exit code 130 and one line `adbench: interrupted` on stderr (no traceback, no "
        "Lightning notice); the cell's lock is released, and the next run runs the cell",
        (
            f"{REL}/test_terminal_messages.py::test_ctrl_c_is_one_line",
            f"{REL}/test_terminal_messages.py::test_ctrl_c_during_training_ends_the_run_with_one_line",
        ),
    ),
    Case(
        "Runner killed while writing a cell's `result.json`",
        "runs the sweep again",
        "no partial `result.json` exists (only a temporary file); the dead runner's lock is "
        "broken, the cell runs again and its folder ends clean; finished cells are untouched",
        (
            f"{REL}/test_interrupts.py::test_run_killed_while_writing_a_result_resumes",
            "tests/runner/test_execute.py::test_stale_locks_are_broken",
        ),
    ),
    Case(
        "A cell raises",
        "`adbench run` (with or without `--fail-fast`)",
        "the error and traceback go to the cell's `error.json`, the sweep goes on (or stops "
        "with `--fail-fast`), exit code 1",
        (
            "tests/runner/test_execute.py::test_failing_cell_is_recorded_and_the_sweep_goes_on",
            "tests/runner/test_execute.py::test_fail_fast_stops_at_the_first_failure",
        ),
    ),
    Case(
        "Two runners on one run directory",
        "starts `adbench run` twice",
        "each cell runs once; a cell held by a live runner is left to it",
        (
            "tests/runner/test_processes.py::test_two_runners_share_one_directory",
            "tests/runner/test_execute.py::test_busy_cells_are_left_to_their_runner",
        ),
    ),
    Case(
        "Corrupt `result.json` in a run directory (garbage bytes, cut JSON, keys missing)",
        "`adbench leaderboard DIR`, `adbench plot scaling DIR`, `adbench run SWEEP --out DIR` "
        "(also with `--dry-run`)",
        "a warning `<file> is not UTF-8 JSON (...)` (or `<file> holds no metrics`) `; moved it "
        "to result.json.corrupt-<time>, the cell counts as unfinished`, and the bad file is kept "
        "beside the cell under that name; `leaderboard` and `plot` leave the cell out, "
        "`--dry-run` lists it as `incomplete`, `run` runs it again; other cells are untouched",
        (
            f"{REL}/test_corrupt_files.py::test_leaderboard_skips_a_corrupt_result",
            f"{REL}/test_corrupt_files.py::test_plot_skips_a_corrupt_result",
            f"{REL}/test_corrupt_files.py::test_dry_run_lists_a_corrupt_result_as_to_run",
            f"{REL}/test_corrupt_files.py::test_run_reruns_a_corrupt_result_and_keeps_the_bad_file",
        ),
    ),
    Case(
        "Unreadable `error.json` or `cell.json` of an unfinished cell",
        "reads the run directory (`adbench run --dry-run`, `load_cells`)",
        "no traceback: a failed cell's error reads `<file> is not UTF-8 JSON (...)`; an "
        "unreadable `cell.json` gives the warning `<file> is not UTF-8 JSON (...); the cell is "
        "left out of the cells table` and `--dry-run` lists the cell as `new`",
        (f"{REL}/test_corrupt_files.py::test_unreadable_cell_and_error_files_are_named",),
    ),
    Case(
        "Empty or unreadable `.lock` (a runner killed between creating and writing it)",
        "runs the sweep again (or `--dry-run`)",
        "a lock that names no owner and is older than 5 s is broken at once with the warning "
        "`broke the lock <file>: it names no owner and is N s old`, and the cell runs "
        "(`--dry-run` lists it as `new`); a younger one counts as a lock being written (busy)",
        (f"{REL}/test_corrupt_files.py::test_a_lock_left_empty_by_a_kill_is_broken_at_once",),
    ),
    Case(
        "Lock of a dead runner, or of a live one, on this machine",
        "runs the sweep again (or `--dry-run`)",
        "a lock whose pid is not alive is broken at once and the cell runs; a live runner's "
        "cell is left to it: `run` counts it `busy` (exit code 0) and `--dry-run` lists it as "
        "`busy`",
        (
            f"{REL}/test_corrupt_files.py::test_a_dead_runners_lock_is_broken_and_a_live_one_is_busy",
            "tests/runner/test_execute.py::test_stale_locks_are_broken",
        ),
    ),
    Case(
        "Disk full on any result write",
        "any command that writes a file",
        "the previous file stays intact, no temporary file is left, the `OSError` names the file",
        (
            f"{REL}/test_disk_full.py::test_failed_write_keeps_the_previous_file_and_names_it",
            "tests/foundation/test_io.py::test_failed_write_keeps_previous_file",
        ),
    ),
    Case(
        "Disk full while `adbench run` exports the results",
        "`adbench run` on a finished run",
        "exit code 1 with one line `adbench: error: [Errno 28] No space left on device: "
        "'<file>'`; every file of the run directory is byte-identical",
        (f"{REL}/test_disk_full.py::test_disk_full_on_the_results_export_keeps_every_file",),
    ),
    Case(
        "Disk full while a cell writes its `result.json`",
        "`adbench run`",
        "that cell is recorded as failed (`error.json` names the file) with no partial or "
        "temporary file; finished cells are untouched; a re-run retries it",
        (f"{REL}/test_disk_full.py::test_disk_full_on_a_cell_result_fails_that_cell_only",),
    ),
    Case(
        "Disk full while a cell writes its checkpoint (`checkpoints: true`)",
        "`adbench run` (a real 1 MiB tmpfs where mounting one is permitted, else a simulated "
        "`ENOSPC`)",
        "the checkpoint goes to a temporary file beside it, removed on failure: no torn "
        "checkpoint stays; that cell fails with one line in its `error.json`: `[Errno 28] No "
        "space left on device: '<cell>/logs/version_0/checkpoints/<name>.ckpt'`; finished "
        "cells keep their files; the sweep goes on and exports the results",
        (
            f"{REL}/test_checkpoint_disk_full.py::test_full_disk_on_a_checkpoint_fails_that_cell_only",
            f"{REL}/test_checkpoint_disk_full.py::"
            "test_simulated_full_disk_on_a_checkpoint_and_the_sweep_goes_on",
        ),
    ),
    Case(
        "Disk still full when the failed cell's `error.json` is written",
        "`adbench run`",
        "the sweep stops: exit code 1 and one line `adbench: error: [Errno 28] cell <id> failed "
        "([Errno 28] No space left on device: '<checkpoint>'), and writing <cell>/error.json "
        "failed too`; no checkpoint, temporary file or lock stays; a re-run runs the cell",
        (
            f"{REL}/test_checkpoint_disk_full.py::"
            "test_disk_still_full_for_the_error_stops_the_sweep_with_one_line",
        ),
    ),
    Case(
        "Runner killed (SIGKILL) while writing a cell's `index.parquet`",
        "runs the sweep again",
        "no torn `index.parquet` exists (only a temporary file, like every file of a cell); "
        "`results.parquet` and `results.csv` already hold the cells finished before the kill; "
        "the re-run runs the cell again and its folder ends clean",
        (
            f"{REL}/test_current_exports.py::test_killed_run_leaves_current_results_and_no_torn_index",
        ),
    ),
    Case(
        "Results files read while a sweep runs or after it was killed",
        "reads `DIR/results.parquet`, `results.csv`, `cells.parquet`, `cells.csv`",
        "they are rewritten atomically after a cell ends, unless written less than 30 s before "
        "(`adbench.runner.store.EXPORT_EVERY_S`), and at the end of the run: they lack at most "
        "the cells of the last 30 s (`load_results(DIR)` reads the cell folders: always "
        "current); a full disk while refreshing them is a warning, never a failed cell",
        (
            f"{REL}/test_current_exports.py::test_exports_are_refreshed_at_most_every_export_every_s",
            f"{REL}/test_current_exports.py::test_killed_run_leaves_current_results_and_no_torn_index",
        ),
    ),
    Case(
        "Sweep value out of range (`trainer.max_epochs: 0`, `seeds: [-1]`, `image_size: -8`, "
        "`trainer.devices: 0`, ...)",
        "`adbench run SWEEP` (also with `--set trainer.max_epochs=0`)",
        "exit code 2 before any cell runs, one line naming the field, its range and the value: "
        "`adbench: error: <file>: trainer.max_epochs must be >= 1 (or null: each method's own), "
        "got 0` (likewise `seeds[1] must be in 0..4294967295, got -1`, `image_size must be >= 1 "
        "(or null: each method's own), got -8`); nothing is written",
        (
            f"{REL}/test_sweep_values.py::test_out_of_range_value_is_refused_with_its_field",
            f"{REL}/test_sweep_values.py::test_values_at_the_edges_of_their_range_are_accepted",
            f"{REL}/test_sweep_values.py::test_max_epochs_0_stops_the_run_before_any_cell",
        ),
    ),
    Case(
        "Method trainer value out of range (a preset's or a sweep's `set: {trainer.max_epochs: "
        "0}`, `trainer.max_steps: -2`, ...)",
        "`adbench run SWEEP`, `adbench.create(...)` or builds the method's config",
        "`ConfigError` before any cell runs (exit code 2, one line): `sweep 'NAME', method "
        "'toy': trainer.max_epochs must be >= 1 (or null: no epoch limit), got 0` (likewise "
        "`trainer.max_steps must be >= 1, or -1 for no step limit`, "
        "`trainer.accumulate_grad_batches must be >= 1`, `trainer.gradient_clip_val must be "
        ">= 0 (or null: no clipping)`)",
        (
            f"{REL}/test_method_trainer_values.py::test_out_of_range_method_trainer_value_is_refused",
            f"{REL}/test_method_trainer_values.py::"
            "test_method_trainer_values_at_the_edges_are_accepted",
            f"{REL}/test_method_trainer_values.py::"
            "test_method_max_epochs_0_stops_the_run_before_any_cell",
        ),
    ),
    Case(
        "Image size a method cannot use (`image_size: 30` for a ViT with 14 px patches)",
        "`adbench run` with `anomalib.dinomaly` or `anomalib.inp_former`",
        "`ConfigError` before any cell runs: `sweep 'NAME', method 'anomalib.dinomaly': "
        "data.image_size must be a multiple of the ViT patch size 14, got 30` (`crop_size ...` "
        "when it crops); the other built-in methods train and score at 30 px",
        (f"{REL}/test_sweep_values.py::test_image_size_a_method_cannot_use_fails_before_any_cell",),
    ),
    Case(
        "Sweep value of the wrong type (`categories: [four]`)",
        "`adbench run SWEEP`",
        "`<file>: categories[0] must be an integer or 'all', got 'four'`; every field of several "
        "types names them (`an integer or null`, `an integer, a string or a list of integers`)",
        (f"{REL}/test_sweep_values.py::test_wrong_type_names_the_accepted_types",),
    ),
    Case(
        "Number that YAML 1.1 reads as text (`1e9`, `5E-2`: it needs a dot and a signed exponent)",
        "writes it for a number field of a sweep file",
        "`<file>: trainer.gradient_clip_val must be a number or null, got '1e9' (a string: "
        "YAML 1.1 reads 1e9 as text; write 1.0e+9)`; an integer field suggests the integer "
        "(`write 1000`), a quoted number says `write it without quotes`",
        (f"{REL}/test_sweep_values.py::test_number_yaml_reads_as_text_gets_a_hint",),
    ),
    Case(
        "Value listed twice (`seeds: [0, 0]`, `categories: [2, 2]`, two method entries alike)",
        "`adbench run SWEEP`",
        "`<file>: seeds lists 0 more than once; list each value once` (likewise `categories`); "
        "two method entries with one label: ``sweep 'NAME': two methods are labelled "
        "'toy:tiny'; give each its own `label:` ``; no cell runs",
        (f"{REL}/test_sweep_values.py::test_duplicate_values_are_refused",),
    ),
)

UNKNOWN_TEST = f"{REL}/test_unknown_names.py::test_unknown_name_is_one_clear_line"
EXAMPLE = {"typo": "bottl", "category": "bottle"}  # how the category case reads in the table


def render() -> str:
    """The Markdown page."""
    from test_unknown_names import CASES as UNKNOWN

    lines = [
        "# Reliability",
        "",
        "What adbench does when something goes wrong. Every row is checked by the tests it names "
        "(`tests/reliability/` runs in CI with the rest of the suite); this page is generated "
        "from them by `python tests/reliability/cases_table.py`.",
        "",
        "Errors name the offending file, key or value. User errors end the `adbench` command "
        "with exit code 2 and one line (`adbench: error: ...`), never a traceback; results that "
        "were finished before are never lost, since every file is written atomically and a "
        "cell counts as finished only once its `result.json` exists.",
        "",
        "| case | what the user does | what adbench does | test |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        tests = "<br>".join(f"`{test}`" for test in case.tests)
        lines.append(f"| {case.case} | {case.user_does} | {case.adbench_does} | {tests} |")
    lines += [
        "",
        "## Unknown names in the command line",
        "",
        f"Each row is one parameter of `{UNKNOWN_TEST}`: exit code 2 and one line "
        "(`adbench: error: ...`) that names the unknown name, suggests the closest known one "
        "and lists the known names; nothing is written.",
        "",
        "| unknown | what the user types | the error says | suggests |",
        "|---|---|---|---|",
    ]
    for case in UNKNOWN:
        typed, suggested = (name.format(**EXAMPLE) for name in (case.typed, case.suggestion))
        lines.append(
            f"| {case.kind} | `{case.shows}` | {case.says} `'{typed}'` | `'{suggested}'` |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write the page."""
    PAGE.write_text(render())
    print(f"wrote {PAGE.relative_to(REPO)}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # the reliability tests import `fixtures` from tests/
    main()
