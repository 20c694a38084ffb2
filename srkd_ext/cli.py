"""The `srkd` command (also `python -m srkd_ext`).

    srkd run       the whole experiment: teachers, students (no KD, single-teacher KD, SRMS, SRCD),
                   full-ranking evaluation, report (results.json, report.md, plots)
    srkd data      fetch a dataset or inspect a file: prints its summary
    srkd train     train one model on a dataset, write its checkpoint
    srkd distill   train a student from teacher checkpoints (SRMS or single-teacher KD)
    srkd evaluate  metrics of a checkpoint on a dataset's validation or test split
    srkd export    a checkpoint to TorchScript / torch.export for Python-free inference
    srkd bench     parameters, size, latency and throughput of checkpoints
    srkd compare   several runs of one experiment (e.g. seeds): mean and sd of every model's metrics

Error contract: every mistake a user can make ends the command with ONE line on stderr
(`srkd <command>: error: ...`) and exit status 2, never a traceback; Ctrl-C exits with 130
after saving what finished. Only bugs show tracebacks.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from srkd_ext.experiment.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (with where to find help), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def _top_k(text: str) -> int | None:
    if text.lower() in ("none", "all", "null"):
        return None
    return _positive_int(text)


def _add_dataset_args(p: argparse.ArgumentParser, required: bool = False, default: str | None = None) -> None:
    p.add_argument("--dataset", required=required, default=default, metavar="NAME|PATH",
                   help="a registered dataset name (e.g. ml-100k, fetched and cached) or a path to an "
                        "interaction file" + (f" (default: {default})" if default else ""))
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="the file's format (default: detected from the file)")
    p.add_argument("--min-rating", type=float, default=None, metavar="R",
                   help="keep only interactions rated at least R")
    p.add_argument("--k-core", type=_non_negative_int, default=None, metavar="K",
                   help="keep users and items with at least K interactions (repeated until stable)")


def _add_device_seed(p: argparse.ArgumentParser, default_device: str | None = "cpu") -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default=default_device,
                   help="where to train and evaluate" + (f" (default: {default_device})" if default_device else ""))
    p.add_argument("--seed", type=_non_negative_int, default=None, metavar="N", help="random seed")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=("full", "sampled"), default="full",
                   help="full ranking over all items (default) or 100 sampled negatives per user")
    p.add_argument("--mask-seen", action="store_true",
                   help="exclude the user's history items from the ranking (default: they stay rankable)")
    p.add_argument("--num-negatives", type=_positive_int, default=100, metavar="N",
                   help="negatives per user with --protocol sampled (default: 100, seeded)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option (e.g. hidden_dim=64, num_layers=2, dropout=0.5); repeatable")
    p.add_argument("--max-len", type=_positive_int, default=50, metavar="L",
                   help="the longest history the model reads (default: 50)")
    p.add_argument("--epochs", type=_positive_int, default=30, metavar="N", help="(default: 30)")
    p.add_argument("--batch-size", type=_positive_int, default=256, metavar="B", help="(default: 256)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--patience", type=_positive_int, default=5, metavar="N",
                   help="stop after N epochs without a better validation NDCG@10 (default: 5)")
    p.add_argument("--windows", choices=("all", "last"), default="all",
                   help="all: every target of every sequence once per epoch (default); last: each "
                   "user's newest --max-len targets only (SASRec's recipe)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the checkpoint and the per-epoch log (resumes if it holds a partial run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from srkd_ext import __version__

    parser = _OneLineParser(prog="srkd", description="Knowledge distillation for sequential recommenders "
                            "(SRMS multi-teacher KD, SRCD students) with fused kernels.")
    parser.add_argument("--version", action="version", version=f"srkd_ext {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    sub.required = True

    p = sub.add_parser("run", help="the whole experiment: teachers, students, evaluation, report",
                       description="Train the teachers and the students (no KD, single-teacher KD, SRMS, "
                       "SRCD with and without KD), evaluate them with full ranking and write results.json, "
                       "report.md and plots into --out. Rerunning the same command resumes.")
    p.add_argument("--dataset", default=None, metavar="NAME|PATH",
                   help="a registered dataset name or a path to an interaction file (default: the preset's, ml-100k)")
    p.add_argument("--format", default=None, metavar="FORMAT", help="the file's format (default: detected)")
    p.add_argument("--config", default=None, metavar="FILE", help="a YAML file describing the experiment")
    p.add_argument("--preset", default=None, choices=("quick", "paper"),
                   help="the base configuration (default: quick, a few minutes on a CPU; paper: the sizes and "
                        "epochs of the literature)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: runs/<dataset>-<preset>)")
    _add_device_seed(p, default_device=None)
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                   help="override the number of epochs of every model")
    p.add_argument("--set", dest="set_options", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any configuration value, e.g. --set kd.alpha=0.3 --set teachers.0.hparams.hidden_dim=32")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(handler="run")

    p = sub.add_parser("data", help="fetch a dataset or inspect a file: print its summary",
                       description="Load a dataset (fetching and caching a registered one) and print its summary.")
    p.add_argument("dataset", metavar="NAME|PATH", help="a registered dataset name or a path")
    p.add_argument("--format", default=None, metavar="FORMAT", help="the file's format (default: detected)")
    p.add_argument("--min-rating", type=float, default=None, metavar="R")
    p.add_argument("--k-core", type=_non_negative_int, default=None, metavar="K")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler="data")

    p = sub.add_parser("train", help="train one model and write its checkpoint")
    _add_dataset_args(p, required=True)
    p.add_argument("--arch", required=True, choices=("sasrec", "gru4rec", "caser", "srcd"))
    _add_train_args(p)
    _add_device_seed(p)
    p.set_defaults(handler="train")

    p = sub.add_parser("distill", help="train a student from teacher checkpoints (SRMS or single-teacher KD)")
    _add_dataset_args(p, required=True)
    p.add_argument("--teacher", action="append", required=True, metavar="CHECKPOINT",
                   help="a teacher checkpoint (from `srkd train`); repeat for several teachers")
    p.add_argument("--arch", default="sasrec", choices=("sasrec", "gru4rec", "caser", "srcd"),
                   help="the student's architecture (default: sasrec)")
    p.add_argument("--top-k", type=_top_k, default=50, metavar="K|all",
                   help="items kept from each teacher's distribution (default: 50; `all` = plain KD)")
    p.add_argument("--gate-rank", type=_positive_int, default=None, metavar="R",
                   help="drop a teacher on a sample where it ranks the true next item below R")
    p.add_argument("--weights", default="uniform", metavar="uniform|confidence|W1,W2,..",
                   help="how teachers are mixed (default: uniform)")
    p.add_argument("--temperature", type=_positive_float, default=2.0, help="(default: 2.0)")
    p.add_argument("--alpha", type=_fraction, default=0.5,
                   help="weight of the ground-truth cross-entropy against the KD term (default: 0.5)")
    _add_train_args(p)
    _add_device_seed(p)
    p.set_defaults(handler="distill")

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a dataset split")
    _add_dataset_args(p, required=True)
    p.add_argument("--checkpoint", required=True, metavar="FILE")
    p.add_argument("--split", choices=("test", "valid"), default="test", help="(default: test)")
    _add_eval_args(p)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics to FILE as JSON")
    _add_device_seed(p)
    p.set_defaults(handler="evaluate")

    p = sub.add_parser("export", help="export a checkpoint for inference without the Python classes")
    p.add_argument("--checkpoint", required=True, metavar="FILE")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the exported program")
    p.set_defaults(handler="export")

    p = sub.add_parser("bench", help="parameters, size, latency and throughput of checkpoints")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the measurements to FILE")
    p.set_defaults(handler="bench")

    p = sub.add_parser("compare", help="several runs of one experiment (e.g. seeds): mean and sd per model",
                       description="Read the results.json of several `srkd run` folders of the same dataset "
                       "and protocol and print a Markdown table of every model's test HR@10, NDCG@10 and "
                       "MRR@10 (mean ± sample standard deviation) and each run's NDCG@10.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="--out folders of `srkd run`")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the table to FILE")
    p.set_defaults(handler="compare")
    return parser


def _one_line_warnings() -> None:
    # Library warnings (e.g. "kernels not built, using the fallback") as one readable line each.
    def fmt(message, category, filename, lineno, line=None):  # noqa: ARG001
        return f"srkd: warning: {message}\n"

    warnings.formatwarning = fmt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _one_line_warnings()
    prog = f"srkd {args.command}"
    # A teacher cache left by other teachers (e.g. one retrained after its folder was deleted) is
    # something the user resolves by deleting it; the message names the folder.
    from srkd_ext.distill.teacher_cache import StaleTeacherCacheError

    try:
        from srkd_ext.experiment import commands

        return getattr(commands, f"cmd_{args.handler}")(args)
    except (UserError, StaleTeacherCacheError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `srkd data x | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
