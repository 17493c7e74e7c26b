"""The `clickjax evaluate`, `export` and `plot` commands, which work on a folder written by `clickjax train`.

    clickjax evaluate --model-dir runs/pbm --format wscd --test testSample --compare runs/dbn --bootstrap 1000
    clickjax export --model-dir runs/dbn --output relevance.parquet --grades query-quantile
    clickjax plot --model-dir runs/pbm --output runs/pbm/figures
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from clickjax.comparison import Difference, bootstrap_click_metrics, bootstrap_ranking_metrics
from clickjax.data import FORMATS, ClickLog, Vocabulary, mark_unseen_pairs
from clickjax.export import GradeMapping, examination_propensities, export_pairs
from clickjax.metrics import UNSEEN_POLICIES, Metrics, evaluate, reads_vocabulary_ids
from clickjax.plots import read_run_json
from clickjax.progress import Progress
from clickjax.ranking import DEFAULT_CUTOFFS, RankingMetrics, ranking_metrics
from clickjax.ingest import vocabulary_id
from clickjax.serialization import VOCABULARY_FILE, load_model, load_training_pairs
from clickjax.memory import available_memory, loads_in_memory
from clickjax.shards import ShardedLog, ShardReader
from clickjax.vocabulary import load_vocabulary

__all__ = ["add_evaluation_commands"]

_EVALUATION_BATCH_SIZE = 1024


def add_evaluation_commands(commands, add_common) -> None:
    """Add the evaluate, export and plot subcommands; `add_common` adds --config and --quiet."""
    evaluate_parser = commands.add_parser(
        "evaluate",
        help="evaluate a trained model on test logs, optionally against a second model",
        description="Compute the metrics of the model in --model-dir on test logs read with its training "
        "vocabulary: log-likelihood, perplexity and calibration on click logs, or DCG, nDCG and MRR of its "
        "relevance on annotation files (--format baidu-annotation).",
    )
    evaluate_parser.add_argument("--model-dir", required=True, type=Path, metavar="DIR", help="folder written by clickjax train --output")
    evaluate_parser.add_argument("--format", required=True, choices=FORMATS, help="format of the test files")
    evaluate_parser.add_argument("--test", required=True, nargs="+", type=Path, metavar="PATH", help="test log or annotation files")
    evaluate_parser.add_argument(
        "--compare", type=Path, metavar="DIR2",
        help="a second trained model to compare with on the same test data (differences are DIR2 minus DIR)",
    )
    evaluate_parser.add_argument(
        "--unseen", choices=UNSEEN_POLICIES, default="oov",
        help="test results whose query-document pair was not in training: score them with the "
        "out-of-vocabulary parameter (oov, default) or leave them out of the metrics (skip)",
    )
    evaluate_parser.add_argument(
        "--bootstrap", type=int, default=0, metavar="N",
        help="with --compare: paired bootstrap replicates, resampling queries, for confidence intervals of the differences (default: 0, none)",
    )
    evaluate_parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the bootstrap intervals (default: 0.95)")
    evaluate_parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    evaluate_parser.add_argument(
        "--threshold", type=int, default=1, help="smallest label that counts as relevant for MRR (default: 1)"
    )
    evaluate_parser.add_argument(
        "--on-error", choices=("strict", "skip"), default="strict",
        help="on a malformed line: stop with an error (strict, default) or drop the session and count it (skip)",
    )
    evaluate_parser.add_argument("--output", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    add_common(evaluate_parser)
    evaluate_parser.set_defaults(handler=_evaluate_command)

    export = commands.add_parser(
        "export",
        help="write the relevance estimate of every training pair to Parquet",
        description="Write one row per query-document pair of the training log: ids, keys, relevance, "
        "impressions, clicks, standard error (when known) and a graded label 0-4.",
    )
    export.add_argument("--model-dir", required=True, type=Path, metavar="DIR", help="folder written by clickjax train --output")
    export.add_argument("--output", required=True, type=Path, metavar="FILE", help="Parquet file to write")
    export.add_argument(
        "--grades", default="quantile", metavar="MAPPING",
        help="how relevance becomes grades 0-4: quantile (fifths of all pairs, default), query-quantile "
        "(fifths within each query) or thresholds=a,b,c,d (grade = number of cut points at or below the relevance)",
    )
    export.add_argument(
        "--propensities", type=Path, metavar="FILE",
        help="also write the examination by rank as propensities for inverse propensity weighting, "
        "normalised to rank 1, to this Parquet file (models with examination by rank: pbm, ubm)",
    )
    add_common(export)
    export.set_defaults(handler=_export_command)

    plot = commands.add_parser(
        "plot",
        help="draw PNG figures of a trained model",
        description="Draw examination by rank with 95% intervals (from standard errors), observed against "
        "predicted CTR by rank, and the learning curves. Needs matplotlib: pip install \"clickjax[plot]\".",
    )
    plot.add_argument("--model-dir", required=True, type=Path, metavar="DIR", help="folder written by clickjax train --output")
    plot.add_argument("--output", required=True, type=Path, metavar="DIR2", help="folder for the PNG files")
    add_common(plot)
    plot.set_defaults(handler=_plot_command)


def _training_config(model_dir: Path) -> dict:
    path = model_dir / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: --model-dir must be a folder written by clickjax train")
    return read_run_json(path).get("config", {})


def _load_vocabulary(model_dir: Path, model) -> Vocabulary:
    path = model_dir / "model" / VOCABULARY_FILE
    if not path.exists() and not reads_vocabulary_ids(model):
        # A model of compressed tables reads only query_doc_hash, so any vocabulary will do.
        return Vocabulary()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the model was saved without its training vocabulary, so test data cannot be "
            "given its ids; retrain it with this version of clickjax train"
        )
    vocabulary = load_vocabulary(path)
    vocabulary.freeze()
    return vocabulary


def _read_test(args, model_dir: Path, model, bars: Progress) -> ClickLog | ShardedLog:
    config = _training_config(model_dir)
    annotation = args.format == "baidu-annotation"
    rules = {}
    if args.format == config.get("format"):
        # Apply the session rules of training, as train did to its own test log, so the ids and sessions agree.
        rules = {
            "query_key": config.get("query_key"),
            "min_results": config.get("min_results", 1),
            "drop_sessions_without_clicks": config.get("drop_sessions_without_clicks", False),
        }
    vocabulary = _load_vocabulary(model_dir, model)
    if args.format == "parquet" and reads_vocabulary_ids(model):
        _check_shard_vocabulary(args.test, vocabulary, model_dir)
    log = _open_test_shards(args, model) if args.format == "parquet" else None
    if log is None:
        with bars.bar(f"reading the test log for {model_dir}", unit=" sessions") as bar:
            log = ClickLog.read(
                args.format,
                [str(path) for path in args.test],
                vocabulary,
                # Annotation lists run to about 60 results and are padded to their own length.
                positions=None if annotation else model.positions,
                on_error=args.on_error,
                document_key=config.get("document_key") if not annotation else None,
                on_batch=bar.update,
                threads=args.threads,
                **rules,
            )
    if args.format == "parquet" and reads_vocabulary_ids(model):
        # Shards of one ingest share its vocabulary, which may know pairs training never saw.
        mark_unseen_pairs(log, load_training_pairs(model_dir / "model")["query_doc_id"])
    return log


def _open_test_shards(args, model) -> ShardedLog | None:
    """Open the test shards for streaming, or return None when they are to be loaded into memory."""
    log = ShardedLog([str(path) for path in args.test], positions=model.positions, threads=args.threads)
    stream = args.stream
    if stream is None:
        stream = not loads_in_memory(log.decoded_bytes, available_memory()[0])
    return log if stream else None


def _check_shard_vocabulary(paths, vocabulary: Vocabulary, model_dir: Path) -> None:
    # Shards carry their own ids: they fit the model only if they were encoded with its vocabulary.
    entry = ShardReader([str(path) for path in paths]).vocabulary
    if entry is not None and entry.get("id") != vocabulary_id(vocabulary):
        raise ValueError(
            f"the test shards {', '.join(map(str, paths))} were encoded with another vocabulary than the model in "
            f"{model_dir}, so their ids do not match; ingest the test log with --vocabulary "
            f"{model_dir / 'model' / VOCABULARY_FILE}"
        )


def _evaluate_command(args: argparse.Namespace) -> int:
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    if args.bootstrap and args.compare is None:
        raise ValueError("--bootstrap compares two models; name the second one with --compare DIR2")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be between 0 and 1, got {args.confidence}")
    bars = Progress(args.quiet)
    folders = [args.model_dir] + ([args.compare] if args.compare is not None else [])
    models = [load_model(folder / "model") for folder in folders]
    logs = [_read_test(args, folder, model, bars) for folder, model in zip(folders, models)]
    if len(logs) == 2 and logs[0].num_sessions != logs[1].num_sessions:
        raise ValueError(
            f"the test files gave {logs[0].num_sessions} sessions for {folders[0]} and {logs[1].num_sessions} for "
            f"{folders[1]}; the two models were trained with different --positions or document keys"
        )
    if logs[0].num_sessions == 0:
        raise ValueError(f"the test files have no sessions: {', '.join(map(str, args.test))}; check the files and --format {args.format}")

    ranking = "label" in (logs[0].column_names if isinstance(logs[0], ShardedLog) else logs[0].columns)
    results = []
    for folder, model, log in zip(folders, models, logs):
        batches = bars.iterate(
            log.batches(_EVALUATION_BATCH_SIZE), f"evaluating {folder}", total=log.num_batches(_EVALUATION_BATCH_SIZE), unit="batch"
        )
        if ranking:
            result = ranking_metrics(model, batches, threshold=args.threshold, unseen=args.unseen)
        else:
            result = evaluate(model, batches, unseen=args.unseen)
        results.append(result)
        print(_format_result(folder, result))

    output = {"test": [str(path) for path in args.test], "unseen": args.unseen,
              "models": {str(folder): result.to_dict() for folder, result in zip(folders, results)}}
    if args.bootstrap:
        if ranking:
            differences = bootstrap_ranking_metrics(results[0], results[1], samples=args.bootstrap, confidence=args.confidence, seed=args.seed)
        else:
            # NOTE: the replicates resample whole queries, so every batch is kept in memory, even
            # for test shards streamed from disk.
            differences = bootstrap_click_metrics(
                models[0], models[1], list(logs[0].batches(_EVALUATION_BATCH_SIZE)),
                second_batches=list(logs[1].batches(_EVALUATION_BATCH_SIZE)),
                samples=args.bootstrap, confidence=args.confidence, seed=args.seed, unseen=args.unseen,
            )
        print(_format_differences(folders, differences))
        output["differences"] = [vars(difference) for difference in differences]
    elif len(results) == 2:
        differences = _point_differences(results[0], results[1])
        print(_format_point_differences(folders, differences))
        output["differences"] = [
            {"metric": name, "first": first, "second": second, "difference": second - first}
            for name, first, second in differences
        ]
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(_without_nan(output), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.output}")
    return 0


def _without_nan(value):
    """Replace NaN (such as nDCG without any relevant result) by None, since JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    return value


def _format_result(folder: Path, result: Metrics | RankingMetrics) -> str:
    if isinstance(result, RankingMetrics):
        lines = [f"\n{folder}: {result.queries:g} annotated queries ({result.queries_without_relevant:g} without a relevant result)"]
        lines.append(f"{'k':<6}{'DCG@k':>10}{'nDCG@k':>10}{'MRR@k':>10}")
        for k in DEFAULT_CUTOFFS:
            lines.append(f"{k:<6}{result.dcg[k]:>10.4f}{result.ndcg[k]:>10.4f}{result.mrr[k]:>10.4f}")
        lines.append(_unseen_line(result.unseen_policy, result.unseen_results))
        return "\n".join(lines)
    lines = [
        f"\n{folder}: {result.sessions:g} sessions, {result.results:g} results scored",
        f"{'log-likelihood':<28}{result.log_likelihood:>12.5f}",
        f"{'perplexity':<28}{result.perplexity:>12.5f}",
        f"{'conditional perplexity':<28}{result.conditional_perplexity:>12.5f}",
        f"{'expected calibration error':<28}{result.expected_calibration_error:>12.5f}",
        "",
        f"{'rank':<6}{'perplexity':>12}{'cond. perplexity':>18}{'CTR':>9}{'predicted':>11}",
    ]
    for rank, values in enumerate(zip(result.perplexity_per_rank, result.conditional_perplexity_per_rank,
                                      result.click_rate_per_rank, result.predicted_click_rate_per_rank), start=1):
        if values[0] is None:
            lines.append(f"{rank:<6}{'-':>12}{'-':>18}{'-':>9}{'-':>11}")
        else:
            lines.append(f"{rank:<6}{values[0]:>12.5f}{values[1]:>18.5f}{values[2]:>9.4f}{values[3]:>11.4f}")
    lines.append(_unseen_line(result.unseen_policy, result.unseen_results, result.unseen_pairs))
    return "\n".join(lines)


def _unseen_line(policy: str, results: float, pairs: int | None = None) -> str:
    distinct = f" ({pairs} distinct pairs)" if pairs is not None else ""
    action = {
        "oov": "scored with the out-of-vocabulary parameter (--unseen oov)",
        "skip": "left out of the metrics (--unseen skip)",
        "none": "scored as any other result, since the model reads no vocabulary ids",
    }[policy]
    return f"unseen test results{distinct}: {results:g}, {action}"


def _point_differences(first: Metrics | RankingMetrics, second: Metrics | RankingMetrics) -> list[tuple[str, float, float]]:
    """Return `(metric, first, second)` for the main metrics of two results of the same kind."""
    if isinstance(first, RankingMetrics):
        return [
            (f"{name}@{k}", getattr(first, name)[k], getattr(second, name)[k])
            for name in ("dcg", "ndcg", "mrr")
            for k in DEFAULT_CUTOFFS
        ]
    names = ("log_likelihood", "perplexity", "conditional_perplexity", "expected_calibration_error")
    return [(name, getattr(first, name), getattr(second, name)) for name in names]


def _format_point_differences(folders: list[Path], differences: list[tuple[str, float, float]]) -> str:
    lines = [
        f"\n{folders[1]} minus {folders[0]} (add --bootstrap N for confidence intervals):",
        f"{'metric':<28}{'first':>11}{'second':>11}{'difference':>12}",
    ]
    for name, first, second in differences:
        lines.append(f"{name:<28}{first:>11.5f}{second:>11.5f}{second - first:>12.5f}")
    return "\n".join(lines)


def _format_differences(folders: list[Path], differences: list[Difference]) -> str:
    first = differences[0]
    lines = [
        f"\n{folders[1]} minus {folders[0]}: paired bootstrap over queries, {first.samples} replicates, "
        f"{first.confidence:.0%} intervals",
        f"{'metric':<26}{'first':>11}{'second':>11}{'difference':>12}{'interval':>26}",
    ]
    for difference in differences:
        marker = " *" if difference.excludes_zero else ""
        interval = f"[{difference.lower:.5f}, {difference.upper:.5f}]"
        lines.append(
            f"{difference.metric:<26}{difference.first:>11.5f}{difference.second:>11.5f}"
            f"{difference.difference:>12.5f}{interval:>26}{marker}"
        )
    if any(difference.excludes_zero for difference in differences):
        lines.append("* the interval excludes 0")
    return "\n".join(lines)


def _export_command(args: argparse.Namespace) -> int:
    mapping = GradeMapping.parse(args.grades)
    for path in [args.output] + ([args.propensities] if args.propensities else []):
        if path.exists() and path.is_dir():
            raise ValueError(f"{path} is a folder; name a Parquet file to write")
    parameters_path = args.model_dir / "parameters.json"
    propensities = None
    if args.propensities is not None:
        if not parameters_path.exists():
            raise FileNotFoundError(f"{parameters_path} not found: --model-dir must be a folder written by clickjax train")
        propensities = examination_propensities(read_run_json(parameters_path))
    summary = export_pairs(args.model_dir, args.output, mapping)
    print(f"wrote {summary.pairs} query-document pairs to {args.output} (grades: {summary.grades}; columns: {', '.join(summary.columns)})")
    if not summary.standard_errors:
        print("no standard errors: the model folder has no pair-statistics.parquet")
    if propensities is not None:
        import pyarrow.parquet as pq

        args.propensities.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(propensities, args.propensities)
        print(f"wrote the propensities of {propensities.num_rows} ranks to {args.propensities} (normalised to rank 1)")
    return 0


def _plot_command(args: argparse.Namespace) -> int:
    from clickjax.plots import plot_run

    try:
        written = plot_run(args.model_dir, args.output)
    except ImportError as error:
        print(f"clickjax: error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0
