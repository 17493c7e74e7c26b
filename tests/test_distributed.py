"""Training over several devices and processes (clickjax.distributed), on the CPU.

JAX fixes the device count and the process group when it starts, so every case runs
distributed_worker.py in fresh interpreters: four CPU devices through
XLA_FLAGS=--xla_force_host_platform_device_count=4, and two processes that meet on 127.0.0.1 and
run their collectives over gloo. Each subprocess has a timeout, so a hang fails the test instead of
blocking the suite.

The optimiser is plain SGD in float32. Its update is linear in the gradient, so splitting a batch
changes only the order of the float32 sums, and the tolerance of 1e-6 is far above that rounding
and far below the size of one update.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import optax
import pytest
from flax import nnx

from clickjax import distributed
from clickjax.cli import main as cli_main
from clickjax.data import ClickLog, Vocabulary
from clickjax.models import PositionBasedModel
from clickjax.training import Trainer
from clickjax.writers import write_log
from simulation import simulate_pbm

TESTS = Path(__file__).parent
WORKER = TESTS / "distributed_worker.py"
TOLERANCE = 1e-6
TIMEOUT_SECONDS = 150
POSITIONS = 5
EXAMINATION = [0.95, 0.8, 0.6, 0.45, 0.3]


def worker_env(devices: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    # The workers import clickjax as the tests do: the installed package, or the sources when
    # PYTHONPATH names them.
    env["PYTHONPATH"] = os.pathsep.join(path for path in [str(TESTS), os.environ.get("PYTHONPATH", "")] if path)
    return env


def run_processes(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Run the commands at the same time; kill all of them and fail if one exceeds the timeout."""
    running = [
        subprocess.Popen(command, env=env, cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    finished = []
    try:
        for process in running:
            stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
            finished.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    except subprocess.TimeoutExpired:
        outputs = []
        for process in running:
            process.kill()
            outputs.append(process.communicate()[1][-2000:])
        pytest.fail(f"a process did not finish within {TIMEOUT_SECONDS} s; stderr tails:\n" + "\n---\n".join(outputs))
    for result in finished:
        assert result.returncode == 0, f"{' '.join(map(str, result.args))} failed:\n{result.stderr[-4000:]}"
    return finished


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_baidu_file(path: Path, sessions: int, seed: int) -> Path:
    log, _ = simulate_pbm(sessions, 12, EXAMINATION, seed=seed)
    write_log(path, log, "baidu")
    return path


def params_of(model: nnx.Module) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, path)): np.asarray(variable.get_value()) for path, variable in flat}


# ---------------------------------------------------------------- four devices in one process


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory) -> tuple[dict[str, np.ndarray], dict]:
    output = tmp_path_factory.mktemp("four-devices")
    run_processes([[sys.executable, str(WORKER), "devices", str(output)]], worker_env(devices=4))
    with np.load(output / "parameters.npz") as saved:
        parameters = dict(saved)
    return parameters, json.loads((output / "devices.json").read_text())


@pytest.mark.parametrize("updates", ["dense", "sparse"])
@pytest.mark.parametrize("model", ["pbm", "ubm", "dbn"])
def test_sharded_batches_match_one_device(four_devices, model, updates):
    # "sparse" trains the per-pair tables with sparse SGD updates, the rest with SGD.
    parameters, checks = four_devices
    suffix = "-sparse" if updates == "sparse" else ""
    assert checks["device_count"] == 4
    names = [key.split("/", 2)[2] for key in parameters if key.startswith(f"{model}/one{suffix}/")]
    assert names, f"no parameters saved for {model}"
    for name in names:
        one = parameters[f"{model}/one{suffix}/{name}"]
        sharded = parameters[f"{model}/replicated{suffix}/{name}"]
        initial = 0.0
        assert np.abs(one - initial).max() > 100 * TOLERANCE, f"{model} {name} did not move in one epoch"
        np.testing.assert_allclose(sharded, one, rtol=0, atol=TOLERANCE, err_msg=f"{model} {name}")


def test_row_sharded_table_matches_replicated(four_devices):
    parameters, checks = four_devices
    # 32 rows over 4 devices: each device stores 8, before and after training.
    assert checks["rows_shard_shapes_before"] == [[8]] * 4
    assert checks["rows_shard_shapes_after"] == [[8]] * 4
    assert checks["rows_sparse_shard_shapes_after"] == [[8]] * 4
    for name in ("attraction/logits", "examination/logits"):
        np.testing.assert_allclose(
            parameters[f"pbm/rows/{name}"], parameters[f"pbm/replicated/{name}"], rtol=0, atol=TOLERANCE, err_msg=name
        )
        np.testing.assert_allclose(
            parameters[f"pbm/rows-sparse/{name}"],
            parameters[f"pbm/replicated-sparse/{name}"],
            rtol=0,
            atol=TOLERANCE,
            err_msg=f"sparse {name}",
        )


def test_row_sharded_run_resumes(four_devices):
    # 150 sessions in batches of 32 make 5 steps per epoch, and a checkpoint is saved every 2
    # steps and at each epoch's end. The first run stops when epoch 2 ends, before its end-of-epoch
    # checkpoint, so the latest is the one at step 8, in the middle of epoch 2. Resuming from it
    # must end with the parameters of a run that was never stopped.
    parameters, _ = four_devices
    assert int(parameters["resume/resumed_from_step"]) == 8
    for name in ("attraction/logits", "examination/logits"):
        np.testing.assert_array_equal(parameters[f"resume/resumed/{name}"], parameters[f"resume/straight/{name}"], err_msg=name)


def test_row_sharded_training_state(four_devices):
    _, checks = four_devices
    # A sparse table's training array (its logits and its Adagrad slot) is split by rows along
    # the mesh axis; its column of slots stays whole.
    assert checks["sparse_table_spec"] == ["batch"]
    # The sparse step's scratch array of query_doc_id is split like the table.
    assert checks["scratch_spec"] == [["batch"]]
    # Dense Adam's moments follow their parameter: split for the table, replicated for
    # examination; the step count is replicated.
    specs = checks["dense_adam_specs"]
    attraction = [spec for path, spec in specs.items() if "'attraction'" in path]
    examination = [spec for path, spec in specs.items() if "'examination'" in path]
    others = [spec for path, spec in specs.items() if "'attraction'" not in path and "'examination'" not in path]
    assert len(attraction) == 2  # mu and nu of the table optimiser; the other one masks the table out
    assert all(spec == ["batch"] for spec in attraction), specs
    assert examination and all(spec == [] for spec in examination), specs
    assert others and all(spec == [] for spec in others), specs


def test_batch_size_not_multiple_of_devices(four_devices):
    _, checks = four_devices
    message = checks["batch_size_error"]
    assert message is not None
    assert "batch size 30 is not a multiple of the 4 devices" in message
    assert "such as 28" in message


def test_place_rejects_uneven_rows(four_devices):
    _, checks = four_devices
    message = checks["place_error"]
    assert message is not None
    assert "column 'weight' has 6 rows, which cannot be split evenly over the 4 devices" in message


def test_uneven_table_rows_rejected(four_devices):
    _, checks = four_devices
    assert checks["table_rows_30"] == 32
    message = checks["uneven_table_error"]
    assert message is not None
    assert "attraction/logits has 30 rows" in message
    assert "table_rows(30) = 32" in message


def test_cli_shard_tables_on_four_devices(four_devices):
    _, checks = four_devices
    assert checks["cli_rejected_exit_code"] == 1
    assert "batch size 30 is not a multiple of the 4 devices" in checks["cli_rejected_message"]
    assert checks["cli_rejected_output_exists"] is False
    assert checks["cli_exit_code"] == 0
    summary = checks["cli_summary"]
    assert summary["devices"] == 4
    assert summary["processes"] == 1
    assert summary["train_sessions"] == 150
    assert summary["config"]["shard_tables"] is True


# ---------------------------------------------------------------- two processes on loopback


@pytest.fixture(scope="module")
def baidu_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("baidu")
    sizes = {"train-0": 60, "train-1": 45, "train-2": 50, "test-0": 40, "test-1": 7}
    return {name: write_baidu_file(folder / f"{name}.txt", sessions, seed) for seed, (name, sessions) in enumerate(sizes.items())}


def run_two_processes(
    output: Path, train: list[Path], test: list[Path], batch_size: int, epochs: int, sparse: bool = False
) -> list[dict]:
    port = free_port()
    commands = [
        [
            sys.executable, str(WORKER), "process",
            "--process-id", str(index), "--num-processes", "2", "--port", str(port),
            "--train", *map(str, train), "--test", *map(str, test),
            "--batch-size", str(batch_size), "--epochs", str(epochs), str(output),
            *(["--sparse"] if sparse else []),
        ]
        for index in range(2)
    ]
    run_processes(commands, worker_env(devices=1))
    return [json.loads((output / f"process-{index}.json").read_text()) for index in range(2)]


def load_process_parameters(output: Path, index: int) -> dict[str, np.ndarray]:
    with np.load(output / f"process-{index}.npz") as saved:
        return dict(saved)


def single_process_run(train: list[Path], test: list[Path], batch_size: int, epochs: int, sparse: bool = False):
    vocabulary = Vocabulary()
    train_log = ClickLog.read("baidu", train, vocabulary, positions=POSITIONS)
    vocabulary.freeze()
    test_log = ClickLog.read("baidu", test, vocabulary, positions=POSITIONS)
    model = PositionBasedModel(POSITIONS, vocabulary.pair_table_size, rngs=nnx.Rngs(0))
    if sparse:
        trainer = Trainer(
            "sgd", learning_rate=0.5, table_optimizer="sgd", table_learning_rate=0.5,
            epochs=epochs, batch_size=batch_size, oov_rate=0.0,
        )
    else:
        trainer = Trainer(optax.sgd(0.5), epochs=epochs, batch_size=batch_size, oov_rate=0.0)
    trainer.fit(model, train_log)
    return model, trainer.evaluate(model, test_log), vocabulary.pair_table_size


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_two_processes_match_union(tmp_path, baidu_files, sparse):
    # Process 0 reads train-0 and test-0, process 1 train-1 and test-1. A global batch of 128
    # contains every session, so each of the 3 epochs is one step over the whole log, whose result
    # does not depend on how the sessions are split between the processes. "sparse" trains the
    # per-pair tables with sparse SGD updates.
    train = [baidu_files["train-0"], baidu_files["train-1"]]
    test = [baidu_files["test-0"], baidu_files["test-1"]]
    reports = run_two_processes(tmp_path, train, test, batch_size=128, epochs=3, sparse=sparse)
    model, metrics, pair_table_size = single_process_run(train, test, batch_size=128, epochs=3, sparse=sparse)

    assert [report["local_train_sessions"] for report in reports] == [60, 45]
    for report in reports:
        assert report["sum_of_large_counts"] == 2 * 2**40 + 1
        assert report["sum_of_fractions"] == pytest.approx(2.0 + 1e-12, rel=0, abs=1e-14)
    for index, report in enumerate(reports):
        assert report["pair_table_size"] == pair_table_size, f"process {index} built another vocabulary"
        assert report["test_sessions"] == 47.0
        assert report["test_log_likelihood"] == pytest.approx(metrics.log_likelihood, abs=TOLERANCE)
        assert report["test_perplexity"] == pytest.approx(metrics.perplexity, abs=TOLERANCE)
        for name, expected in params_of(model).items():
            actual = load_process_parameters(tmp_path, index)[name]
            np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE, err_msg=f"process {index} {name}")


def test_uneven_shards_finish(tmp_path, baidu_files):
    # Process 0 reads train-0 and train-2 (110 sessions), process 1 only train-1 (45). With a
    # global batch of 32 (16 per process) process 0 has 7 local batches and process 1 has 3, so
    # process 1 must run 4 steps of empty sessions each epoch for the collectives to line up.
    train = [baidu_files["train-0"], baidu_files["train-1"], baidu_files["train-2"]]
    test = [baidu_files["test-0"], baidu_files["test-1"]]
    reports = run_two_processes(tmp_path, train, test, batch_size=32, epochs=2)

    assert [report["local_train_sessions"] for report in reports] == [110, 45]
    assert [report["local_steps"] for report in reports] == [7, 3]
    assert [report["steps"] for report in reports] == [7, 7]
    assert reports[0]["train_losses"] == reports[1]["train_losses"]
    assert all(np.isfinite(reports[0]["train_losses"]))
    first, second = (load_process_parameters(tmp_path, index) for index in range(2))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)

    # The combined test metrics are those of the trained parameters on the union of the test files.
    vocabulary = Vocabulary()
    ClickLog.read("baidu", train, vocabulary, positions=POSITIONS)
    vocabulary.freeze()
    test_log = ClickLog.read("baidu", test, vocabulary, positions=POSITIONS)
    model = PositionBasedModel(POSITIONS, vocabulary.pair_table_size, rngs=nnx.Rngs(0))
    for name, value in first.items():
        variable = model
        for part in name.split("/"):
            variable = getattr(variable, part)
        variable.set_value(value)
    metrics = Trainer(batch_size=32).evaluate(model, test_log)
    assert reports[0]["test_sessions"] == 47.0
    assert reports[0]["test_log_likelihood"] == pytest.approx(metrics.log_likelihood, abs=TOLERANCE)
    assert reports[1]["test_perplexity"] == pytest.approx(metrics.perplexity, abs=TOLERANCE)


# ---------------------------------------------------------------- file assignment and bad input


def test_process_files_deals_in_turn():
    paths = ["a", "b", "c", "d", "e"]
    assert distributed.process_files(paths, 0, 2) == ["a", "c", "e"]
    assert distributed.process_files(paths, 1, 2) == ["b", "d"]
    assert distributed.process_files(paths, 2, 3) == ["c"]
    assert distributed.process_files(["a"], 1, 2) == []


def test_process_files_rejects_bad_index():
    with pytest.raises(ValueError, match="process_index 2 is out of range for 2 processes"):
        distributed.process_files(["a"], 2, 2)


def test_read_process_log_shares_ids(baidu_files):
    train = [baidu_files["train-0"], baidu_files["train-1"], baidu_files["train-2"]]
    whole = ClickLog.read("baidu", train, Vocabulary(), positions=POSITIONS)
    shares = []
    for index in range(2):
        vocabulary = Vocabulary()
        shares.append(
            distributed.read_process_log(
                "baidu", train, vocabulary, positions=POSITIONS, process_index=index, process_count=2
            )
        )
        assert vocabulary.pair_table_size == int(whole.columns["query_doc_id"].max()) + 1
    # Files 0 and 2 go to process 0, file 1 to process 1; each keeps its own sessions with the ids
    # that one reader over all three files assigns.
    first, second, third = 60, 45, 50
    expected = {
        0: np.concatenate([whole.columns["query_doc_id"][:first], whole.columns["query_doc_id"][first + second :]]),
        1: whole.columns["query_doc_id"][first : first + second],
    }
    assert shares[0].num_sessions == first + third
    assert shares[1].num_sessions == second
    for index, share in enumerate(shares):
        np.testing.assert_array_equal(share.columns["query_doc_id"], expected[index])
    assert shares[0].stats["sessions_kept"] == first + third
    assert shares[1].stats["sessions_kept"] == second


def test_read_process_log_rejects_open_positions(baidu_files):
    with pytest.raises(ValueError, match="needs a fixed positions"):
        distributed.read_process_log("baidu", [baidu_files["train-0"]], Vocabulary(), positions=None, process_index=0, process_count=1)


def test_unknown_table_sharding():
    with pytest.raises(ValueError, match="unknown table_sharding 'columns'; expected one of replicated, rows"):
        distributed.DataParallel(table_sharding="columns")


def test_initialize_rejects_process_id_out_of_range():
    with pytest.raises(ValueError, match="process_id 2 is out of range for 2 processes; expected 0 to 1"):
        distributed.initialize("127.0.0.1:1", num_processes=2, process_id=2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--num-processes", "2"], "--num-processes apply only with --distributed"),
        (["--distributed", "--coordinator-address", "localhost"], "is not HOST:PORT"),
        (["--distributed", "--coordinator-address", "127.0.0.1:99999"], "is not HOST:PORT"),
        (["--distributed", "--num-processes", "0"], "--num-processes must be at least 1, got 0"),
        (["--distributed", "--process-id", "-1"], "--process-id must be at least 0, got -1"),
        (
            ["--distributed", "--num-processes", "2", "--process-id", "2"],
            "--process-id 2 is out of range for --num-processes 2; expected 0 to 1",
        ),
    ],
)
def test_cli_rejects_bad_distributed_options(tmp_path, baidu_files, capsys, arguments, message):
    code = cli_main(
        [
            "train", "--model", "pbm", "--format", "baidu",
            "--train", str(baidu_files["train-0"]), "--test", str(baidu_files["test-0"]),
            "--output", str(tmp_path / "run"), *arguments,
        ]
    )
    assert code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_distributed_with_sharded_tables(tmp_path, baidu_files):
    # Two processes with two CPU devices each: the batches and the rows of the attraction table
    # are split over four devices. The one validation file goes to process 0, so process 1
    # validates on empty sessions only. Process 0 writes the results for both.
    train = [baidu_files["train-0"], baidu_files["train-1"], baidu_files["train-2"]]
    test = [baidu_files["test-0"], baidu_files["test-1"]]
    port = free_port()
    outputs = [tmp_path / "run-0", tmp_path / "run-1"]
    commands = [
        [
            sys.executable, "-m", "clickjax", "train", "--model", "pbm", "--format", "baidu",
            "--train", *map(str, train), "--test", *map(str, test), "--output", str(outputs[index]),
            "--validation", str(baidu_files["test-1"]),
            "--positions", str(POSITIONS), "--epochs", "2", "--batch-size", "32", "--shard-tables",
            "--distributed", "--coordinator-address", f"127.0.0.1:{port}",
            "--num-processes", "2", "--process-id", str(index),
        ]
        for index in range(2)
    ]
    results = run_processes(commands, worker_env(devices=2))

    assert "model pbm: 155 training sessions, 47 test sessions" in results[0].stdout
    # gloo prints its connection messages to stdout itself; clickjax prints nothing in process 1.
    printed = [line for line in results[1].stdout.splitlines() if not line.startswith("[Gloo]")]
    assert printed == []
    assert not outputs[1].exists()
    summary = json.loads((outputs[0] / "metrics.json").read_text())
    assert summary["processes"] == 2
    assert summary["devices"] == 4
    assert summary["train_sessions"] == 155
    assert summary["test_sessions"] == 47
    assert summary["validation_sessions"] == 7
    assert summary["early_stopping"] is True
    assert summary["reader_stats"]["train"]["sessions_kept"] == 155
    assert summary["reader_stats"]["test"]["sessions_kept"] == 47

    # The saved model covers the pairs of every process's share, in a table padded to 4 rows.
    vocabulary = Vocabulary()
    whole = ClickLog.read("baidu", train, vocabulary, positions=POSITIONS)
    model_config = json.loads((outputs[0] / "model" / "clickjax-model.json").read_text())
    assert model_config["query_doc_pairs"] == -(-vocabulary.pair_table_size // 4) * 4
    with np.load(outputs[0] / "model" / "training-pairs.npz") as pairs:
        np.testing.assert_array_equal(pairs["query_doc_id"], np.arange(2, vocabulary.pair_table_size))
        real = whole.columns["mask"].astype(bool)
        expected_impressions = np.bincount(whole.columns["query_doc_id"][real], minlength=vocabulary.pair_table_size)[2:]
        np.testing.assert_array_equal(pairs["impressions"], expected_impressions)


def test_cli_distributed_needs_coordinator(tmp_path, baidu_files):
    # Outside a cluster manager, --distributed without the coordinator options cannot start.
    env = worker_env()
    for name in [name for name in env if name.startswith(("SLURM_", "OMPI_"))]:
        del env[name]
    command = [
        sys.executable, "-m", "clickjax", "train", "--model", "pbm", "--format", "baidu",
        "--train", str(baidu_files["train-0"]), "--test", str(baidu_files["test-0"]),
        "--output", str(tmp_path / "run"), "--distributed",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)

    assert result.returncode == 1
    assert "could not start the distributed JAX runtime" in result.stderr
    assert "coordinator address" in result.stderr
    assert not (tmp_path / "run").exists()
