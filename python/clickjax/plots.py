"""Figures of a trained model: examination by rank, observed against predicted CTR, learning curves.

`plot_run` reads the files that `clickjax train` wrote to a folder and draws PNG figures with
matplotlib (the `plot` extra: `pip install "clickjax[plot]"`):

- `examination.png`: the examination probability by rank, with error bars of 1.96 standard
  errors from the observed Fisher information (`clickjax.uncertainty`), for models that have
  examination by rank. For UBM that is the examination when nothing above was clicked, and a
  second line shows it right after a click at the rank above;
- `ctr.png`: the observed click-through rate of the test log by rank beside the model's mean
  predicted click probability;
- `learning-curves.png`: the training loss and the validation log-likelihood by epoch, from
  `epochs.jsonl` (or the history in `metrics.json` of runs that predate it).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_run", "read_run_json"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "clickjax plot needs matplotlib, which is not installed; install the plot extra with "
            "pip install \"clickjax[plot]\""
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def read_run_json(path: Path) -> dict:
    """Read a JSON file of a training run, such as `metrics.json`, naming the file when it is invalid."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON (line {error.lineno}): {error.msg}; rerun clickjax train") from error


def _epoch_records(folder: Path, metrics: dict) -> list[dict]:
    path = folder / "epochs.jsonl"
    if not path.exists():
        return list(metrics.get("history", []))
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not valid JSON: {error.msg}") from error
    return records


def plot_run(model_dir: Path, output: Path) -> list[Path]:
    """Draw the figures of the run in `model_dir` into the folder `output`.

    Returns:
      The PNG files written. A figure whose data the run lacks (examination for a cascade model)
      is left out.

    Raises:
      ImportError: matplotlib is not installed.
      FileNotFoundError: `model_dir` has no `metrics.json`.
    """
    pyplot = _pyplot()
    folder = Path(model_dir)
    metrics_path = folder / "metrics.json"
    if not metrics_path.exists():
        raise FileNotFoundError(
            f"{metrics_path} not found: --model-dir must be a folder written by clickjax train"
        )
    metrics = read_run_json(metrics_path)
    parameters = metrics.get("parameters", {})
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []

    examination = parameters.get("examination_by_rank")
    if examination:
        figure, axes = pyplot.subplots(figsize=(6, 4), dpi=100)
        ranks = list(range(1, len(examination) + 1))
        standard_error = parameters.get("examination_by_rank_standard_error")
        after_click = examination_after_click(parameters)
        label = "estimate" if after_click is None else "no click above"
        if standard_error is not None:
            # 1.96 standard errors either side, cut at 0 and 1.
            errors = [1.96 * value if value is not None else 0.0 for value in standard_error]
            below = [min(error, theta) for error, theta in zip(errors, examination)]
            above = [min(error, 1.0 - theta) for error, theta in zip(errors, examination)]
            axes.errorbar(ranks, examination, yerr=[below, above], marker="o", capsize=3, label=f"{label}, 95% interval")
        else:
            axes.plot(ranks, examination, marker="o", label=f"{label} (no standard errors recorded)")
        if after_click is not None:
            axes.plot(ranks[1:], after_click, marker="s", linestyle="--", label="after a click at the rank above")
        axes.set(xlabel="rank", ylabel="examination probability", title=f"Examination by rank ({metrics.get('model')})")
        axes.set_ylim(0, 1.05)
        axes.set_xticks(ranks)
        axes.legend()
        written.append(_save(pyplot, figure, output / "examination.png"))

    observed = metrics.get("click_rate_per_rank")
    predicted = metrics.get("predicted_click_rate_per_rank")
    if observed and predicted:
        figure, axes = pyplot.subplots(figsize=(6, 4), dpi=100)
        ranks = [rank for rank, value in enumerate(observed, start=1) if value is not None]
        axes.plot(ranks, [observed[r - 1] for r in ranks], marker="o", label="observed CTR (test log)")
        axes.plot(ranks, [predicted[r - 1] for r in ranks], marker="s", linestyle="--", label="predicted P(click)")
        axes.set(xlabel="rank", ylabel="click-through rate", title="Observed and predicted CTR by rank")
        axes.legend()
        written.append(_save(pyplot, figure, output / "ctr.png"))

    records = _epoch_records(folder, metrics)
    if records:
        figure, loss_axes = pyplot.subplots(figsize=(6, 4), dpi=100)
        epochs = [record["epoch"] for record in records]
        loss_axes.plot(epochs, [record["train_loss"] for record in records], marker="o", color="tab:blue", label="training loss")
        loss_axes.set(xlabel="epoch", ylabel="training loss (negative log-likelihood)", title="Learning curves")
        loss_axes.xaxis.get_major_locator().set_params(integer=True)
        validated = [
            (record["epoch"], record["validation_log_likelihood"])
            for record in records
            if record.get("validation_log_likelihood") is not None
        ]
        if validated:
            validation_axes = loss_axes.twinx()
            validation_axes.plot(*zip(*validated), marker="s", color="tab:orange", label="validation log-likelihood")
            validation_axes.set_ylabel("validation log-likelihood")
            validation_axes.legend(loc="center right")
        loss_axes.legend(loc="upper right")
        written.append(_save(pyplot, figure, output / "learning-curves.png"))
    return written


def examination_after_click(parameters: dict) -> list[float] | None:
    """Return theta(r, r - 1) for r = 2..P, from a UBM's `examination_by_rank_and_previous_click`.

    UBM's `examination_by_rank` is theta(r, 0), the examination of rank r when nothing above was
    clicked. Its figure also draws the examination right after a click at the rank above, so
    that it does not read as the examination of every session. Returns None for other models.
    """
    matrix = parameters.get("examination_by_rank_and_previous_click")
    if not matrix:
        return None
    return [row[rank - 1] for rank, row in enumerate(matrix, start=1) if rank >= 2]


def _save(pyplot, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)
    return path
