"""Checkpoints: a training process killed mid-epoch resumes to the parameters of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from clickjax.models import MODELS
from clickjax.training import Trainer
from simulation import simulate_pbm

TESTS = Path(__file__).parent

# 640 sessions in batches of 32: 20 steps per epoch, 60 in all; checkpoints every 6 steps.
OPTIONS = dict(epochs=3, batch_size=32, seed=5, checkpoint_every=6, patience=10)
STEPS_PER_EPOCH = 20

TRAINING_SCRIPT = """
import sys, time
from flax import nnx
from clickjax.models import MODELS
from clickjax.training import Trainer
from simulation import simulate_pbm

class SlowTrainer(Trainer):
    # Slow each step down, so that the parent process can kill this one mid-epoch.
    def _place(self, batch):
        time.sleep(0.05)
        return super()._place(batch)

train, _ = simulate_pbm(sessions=640, pairs=60, theta=[0.9, 0.6, 0.4, 0.3], seed=1)
validation, _ = simulate_pbm(sessions=200, pairs=60, theta=[0.9, 0.6, 0.4, 0.3], seed=2)
model = MODELS["dbn"](positions=4, query_doc_pairs=62, rngs=nnx.Rngs(0))
SlowTrainer(checkpoint_dir=sys.argv[1], **{options}).fit(model, train, validation)
"""


def logs():
    train, _ = simulate_pbm(sessions=640, pairs=60, theta=[0.9, 0.6, 0.4, 0.3], seed=1)
    validation, _ = simulate_pbm(sessions=200, pairs=60, theta=[0.9, 0.6, 0.4, 0.3], seed=2)
    return train, validation


def dbn():
    return MODELS["dbn"](positions=4, query_doc_pairs=62, rngs=nnx.Rngs(0))


def parameters(model) -> dict:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, path)): np.asarray(variable.get_value()) for path, variable in flat}


def saved_steps(folder: Path) -> list[int]:
    """The steps of the complete checkpoints in `folder` (Orbax renames a step folder to its number when done)."""
    if not folder.exists():
        return []
    return sorted(int(entry.name) for entry in folder.iterdir() if entry.name.isdigit())


def test_killed_run_resumes_to_same_parameters(tmp_path):
    folder = tmp_path / "checkpoints"
    # The subprocess imports clickjax as the tests do: the installed package, or the sources when
    # PYTHONPATH names them.
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path for path in [str(TESTS), os.environ.get("PYTHONPATH", "")] if path),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", TRAINING_SCRIPT.format(options=OPTIONS), str(folder)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # Kill the process once a mid-epoch checkpoint of epoch 2 exists, so that the resumed run has
    # to restore the shuffle position, the epoch's loss sums and the best parameters of epoch 1.
    deadline = time.monotonic() + 240
    try:
        while not any(step > STEPS_PER_EPOCH and step % STEPS_PER_EPOCH for step in saved_steps(folder)):
            assert process.poll() is None, f"training ended before it was killed:\n{process.stdout.read().decode()}"
            assert time.monotonic() < deadline, "no mid-epoch checkpoint within 240 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = max(saved_steps(folder))
    assert killed_at < 3 * STEPS_PER_EPOCH

    train, validation = logs()
    resumed = dbn()
    result = Trainer(checkpoint_dir=folder, **OPTIONS).fit(resumed, train, validation, resume=True)
    uninterrupted = dbn()
    expected = Trainer(**OPTIONS).fit(uninterrupted, train, validation)

    assert result.resumed_from_step is not None
    assert result.resumed_from_step >= killed_at - 1
    assert result.steps == expected.steps == 3 * STEPS_PER_EPOCH
    assert [record.train_loss for record in result.history] == [record.train_loss for record in expected.history]
    assert result.best_epoch == expected.best_epoch
    got, want = parameters(resumed), parameters(uninterrupted)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_resume_rejects_other_run(tmp_path):
    train, _ = logs()
    Trainer(checkpoint_dir=tmp_path, epochs=1, batch_size=64).fit(dbn(), train)

    with pytest.raises(ValueError, match="belongs to another run"):
        Trainer(checkpoint_dir=tmp_path, epochs=1, batch_size=32).fit(dbn(), train, resume=True)


def test_resume_without_checkpoint_folder():
    train, _ = logs()
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        Trainer(epochs=1).fit(dbn(), train, resume=True)


def test_resume_of_finished_run_keeps_result(tmp_path):
    train, _ = logs()
    first = dbn()
    Trainer(checkpoint_dir=tmp_path, epochs=2, batch_size=64).fit(first, train)

    again = dbn()
    result = Trainer(checkpoint_dir=tmp_path, epochs=2, batch_size=64).fit(again, train, resume=True)

    assert result.resumed_from_step == 20
    assert len(result.history) == 2
    got, want = parameters(again), parameters(first)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _wscd_log(path: Path, queries: int, sessions_per_query: int) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for query in range(queries):
        sessions = []
        for _ in range(sessions_per_query):
            urls = [f"u{query}_{doc}" for doc in rng.permutation(8)[:5]]
            clicked = [url for rank, url in enumerate(urls) if rng.random() < 0.5 / (rank + 1)]
            sessions.append(f"q{query}\t{','.join(urls)} : {' , '.join(clicked)}")
        lines.append("; ".join(sessions))
    path.write_text("\n".join(lines) + "\n")


def test_interrupted_train_says_how_to_resume(tmp_path):
    log = tmp_path / "log"
    _wscd_log(log, queries=40, sessions_per_query=50)
    output = tmp_path / "run"
    environment = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(path for path in [str(TESTS), os.environ.get("PYTHONPATH", "")] if path),
    }
    command = [
        sys.executable, "-m", "clickjax", "train", "--model", "dbn", "--format", "wscd", "--train", str(log),
        "--test", str(log), "--output", str(output), "--epochs", "500", "--batch-size", "16",
        "--checkpoint-every", "5", "--quiet",
    ]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while not saved_steps(output / "checkpoints"):
            assert process.poll() is None, f"training ended before it was interrupted:\n{process.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    # NOTE: when the interrupt lands during an asynchronous Orbax save, Orbax itself logs the
    # failed save with its traceback (an ERROR line from absl) before clickjax's message, so the
    # output is not checked for "Traceback".
    assert "clickjax: interrupted" in stderr
    assert "--resume" in stderr


def test_new_run_removes_checkpoints_of_an_earlier_one(tmp_path):
    from clickjax.cli import main

    log = tmp_path / "log"
    _wscd_log(log, queries=4, sessions_per_query=10)
    output = tmp_path / "run"
    arguments = ["train", "--model", "pbm", "--format", "wscd", "--train", str(log), "--test", str(log),
                 "--output", str(output), "--batch-size", "8", "--checkpoint-every", "2", "--quiet"]
    assert main([*arguments, "--epochs", "3"]) == 0
    earlier = saved_steps(output / "checkpoints")
    assert max(earlier) == 15
    # A shorter new run must not keep the longer run's checkpoints, which would block its --resume.
    assert main([*arguments, "--epochs", "1"]) == 0
    assert max(saved_steps(output / "checkpoints")) == 5
    assert main([*arguments, "--epochs", "1", "--resume"]) == 0


def test_resume_with_other_model_names_both(tmp_path, capsys):
    from clickjax.cli import main

    log = tmp_path / "log"
    _wscd_log(log, queries=4, sessions_per_query=10)
    output = tmp_path / "run"
    arguments = ["--format", "wscd", "--train", str(log), "--test", str(log), "--output", str(output),
                 "--batch-size", "8", "--epochs", "1", "--quiet"]
    assert main(["train", "--model", "pbm", *arguments]) == 0
    capsys.readouterr()

    # UBM's tables have other shapes than PBM's, so restoring them would fail inside the model.
    assert main(["train", "--model", "ubm", *arguments, "--resume"]) == 1
    error = capsys.readouterr().err
    assert "belongs to another run" in error
    assert "model: 'PositionBasedModel' in the checkpoint, 'UserBrowsingModel' in this run" in error
    assert "Traceback" not in error


def test_resume_says_where_it_starts(tmp_path, capsys):
    from clickjax.cli import main

    log = tmp_path / "log"
    _wscd_log(log, queries=4, sessions_per_query=10)
    output = tmp_path / "run"
    arguments = ["train", "--model", "pbm", "--format", "wscd", "--train", str(log), "--test", str(log),
                 "--output", str(output), "--batch-size", "8", "--epochs", "1", "--quiet", "--resume"]
    # 40 sessions in batches of 8: one epoch is 5 steps, and its end is checkpointed.
    assert main(arguments) == 0
    assert "--resume found no checkpoint" in capsys.readouterr().err

    assert main(arguments) == 0
    assert "resumed from the checkpoint at step 5" in capsys.readouterr().out
