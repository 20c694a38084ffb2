"""`srkd run`: the whole experiment, from a resolved configuration to the report.

    load + split the data -> train every teacher -> pick the best teacher (validation NDCG@10)
    -> students: SASRec without KD, with single-teacher KD (best teacher, all items), with SRMS
       (all teachers, top-k selection, optional gating), SRCD with SRMS and without KD
    -> evaluate each on the test split (full ranking, seen items not masked unless configured)
    -> profile each (parameters, size, batch-1 latency, batch-256 throughput)
    -> results.json, report.md, plots; the table printed last.

Each model lives in <out>/models/<name>/; it is finished once its record.json is written (after
training AND evaluation), and a rerun skips finished models and resumes an interrupted training
from its last epoch. Ctrl-C (or SIGTERM) writes a partial report of the finished models.
"""

from __future__ import annotations

import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from srkd_ext.experiment import steps
from srkd_ext.experiment.config import fingerprint, model_train_options
from srkd_ext.experiment.records import (
    MAIN_METRIC,
    ROLE_SRCD,
    ROLE_SRCD_KD,
    ROLE_STUDENT,
    ROLE_STUDENT_KD,
    ROLE_STUDENT_SRMS,
    ROLE_TEACHER,
    best_teacher,
)
from srkd_ext.experiment.report import build_results, console_table, write_report
from srkd_ext.experiment.workspace import ExperimentDir


@dataclass
class ModelPlan:
    """One model to train: its name, role, architecture, options and teachers ("all", "best", none)."""

    name: str
    role: str
    arch: str
    hparams: dict
    train: dict
    where: str  # the config key it comes from, for error messages
    teachers: str | None = None
    kd: dict | None = field(default=None)


def plan_models(cfg: dict) -> list[ModelPlan]:
    plans = [
        ModelPlan(t["name"], ROLE_TEACHER, t["arch"], t.get("hparams", {}), model_train_options(cfg, t),
                  f"teachers.{i}")
        for i, t in enumerate(cfg["teachers"])
    ]
    student, srcd = cfg["student"], cfg["srcd"]
    s_train, c_train = model_train_options(cfg, student), model_train_options(cfg, srcd)
    kd = cfg["kd"]
    single = {**kd, "top_k": None, "gate_rank": None, "weights": "uniform"}
    srms = {**kd, "top_k": cfg["srms"]["top_k"], "gate_rank": cfg["srms"]["gate_rank"],
            "weights": cfg["srms"]["weights"]}
    s_hp, c_hp = student.get("hparams", {}), srcd.get("hparams", {})
    plans += [
        ModelPlan("student", ROLE_STUDENT, student["arch"], s_hp, s_train, "student"),
        ModelPlan("student-kd", ROLE_STUDENT_KD, student["arch"], s_hp, s_train, "student", "best", single),
        ModelPlan("student-srms", ROLE_STUDENT_SRMS, student["arch"], s_hp, s_train, "student", "all", srms),
        ModelPlan("srcd-srms", ROLE_SRCD_KD, "srcd", c_hp, c_train, "srcd", "all", srms),
        ModelPlan("srcd", ROLE_SRCD, "srcd", c_hp, c_train, "srcd"),
    ]
    names = [p.name for p in plans]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        from srkd_ext.experiment.errors import UserError

        raise UserError(f"teachers: the name {clash[0]!r} is reserved for a student; rename the teacher")
    return plans


def environment() -> dict:
    import numpy

    import srkd_ext

    compiled = srkd_ext.kernels_available()
    return {
        "versions": {
            "srkd_ext": srkd_ext.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
        "platform": {"system": platform.platform(), "cpu_threads": torch.get_num_threads(),
                     "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "kernels": {
            "compiled": compiled,
            "cuda": bool(compiled and srkd_ext.cuda_kernels_available()),
            "ops_ran_on": "compiled srkd_ext kernels" if compiled else "plain-PyTorch reference (fallback)",
        },
    }


class _TerminateAsInterrupt:
    """SIGTERM (e.g. a job scheduler stopping the run) ends the run like Ctrl-C: partial report."""

    def __enter__(self):
        self._old = None
        try:
            self._old = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class Experiment:
    def __init__(self, cfg: dict, out: Path, make_plots: bool = True, echo=print):
        self.cfg = cfg
        self.dir = ExperimentDir(out)
        self.make_plots = make_plots
        self.echo = echo
        self.plans = plan_models(cfg)
        self.records: list[dict] = []
        self.meta: dict = {}
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    # --- the run ---------------------------------------------------------------------------
    def run(self) -> int:
        """Returns the exit status: 0 when every model finished, 130 when interrupted."""
        cfg = self.cfg
        steps.check_device(cfg["device"])
        # The dataset is read before the folder is claimed, so a mistyped path leaves no folder
        # behind that a corrected command would then refuse as "a different experiment".
        ds_cfg = cfg["dataset"]
        ds = steps.open_dataset(ds_cfg["source"], ds_cfg.get("format"), ds_cfg.get("min_rating"),
                                ds_cfg.get("k_core", 0))
        resumed = self.dir.claim(cfg)
        self.dir.check_dataset(ds.sha256, ds_cfg["source"])
        from srkd_ext.data import leave_one_out_split

        split = leave_one_out_split(ds)
        self.meta = self._meta(ds, split)
        self.echo(f"{ds}")
        self.echo(f"{'resuming' if resumed else 'writing'} the experiment in {self.dir.root} "
                  f"({len(self.plans)} models, preset {cfg.get('preset')}, device {cfg['device']})")
        with _TerminateAsInterrupt():
            try:
                for n, plan in enumerate(self.plans, 1):
                    record = self._finish(plan, split, n)
                    self.records.append(record)
                    self._write(partial=n < len(self.plans), plots=False)
            except KeyboardInterrupt:
                self._write(partial=True, plots=self.make_plots)
                done = len(self.records)
                self.echo(f"\ninterrupted: {done} of {len(self.plans)} models finished and kept; the partial "
                          f"report is in {self.dir.root}. Run the same command again to resume.", file=sys.stderr)
                return 130
        results = self._write(partial=False, plots=self.make_plots)
        self.echo(f"all {len(self.plans)} models finished; this invocation took {results['seconds']:.0f} s "
                  f"({results['cpu_seconds']:.0f} CPU seconds)")
        self.echo("")
        self.echo(console_table(results))
        beside = "results.json, accuracy_vs_params.png, validation_ndcg.png" if self.make_plots else "results.json"
        self.echo(f"report: {self.dir.root / 'report.md'}  ({beside} beside it)")
        return 0

    def _meta(self, ds, split) -> dict:
        cfg = self.cfg
        ev = cfg["evaluation"]
        return {
            **environment(),
            "dataset": {"source": cfg["dataset"]["source"], **ds.summary(), "split": split.summary()},
            "protocol": {
                "split": "leave-one-out (last item = test, second to last = validation; users with fewer "
                         "than 3 interactions only train)",
                "ranking": ev["protocol"], "mask_seen": ev["mask_seen"], "ks": ev["ks"],
                "num_negatives": ev["num_negatives"] if ev["protocol"] == "sampled" else None,
                "max_len": cfg["max_len"], "model_selection": f"best validation {MAIN_METRIC} epoch",
            },
            "seed": cfg["seed"],
            "device": cfg["device"],
            "config_fingerprint": fingerprint(cfg),
            "config": cfg,
            "command": " ".join(["srkd"] + sys.argv[1:]) if sys.argv and "srkd" in sys.argv[0] else None,
        }

    def _write(self, partial: bool, plots: bool) -> dict:
        # CPU seconds (all threads) beside wall seconds: on a shared machine the wall time says
        # more about the other processes than about this run.
        meta = {**self.meta, "seconds": time.perf_counter() - self.started,
                "cpu_seconds": time.process_time() - self.cpu_started}
        results = build_results(meta, list(self.records), partial, [p.name for p in self.plans])
        write_report(self.dir.root, results, make_plots=plots)
        return results

    # --- one model ---------------------------------------------------------------------------
    def _finish(self, plan: ModelPlan, split, n: int) -> dict:
        record = self.dir.finished_record(plan.name)
        tag = f"[{n}/{len(self.plans)}]"
        if record is not None:
            self.echo(f"{tag} {plan.name}: finished in an earlier run, kept ({_summary(record)})")
            return record
        record = self._train_and_measure(plan, split)
        self.dir.save_record(record)
        self.echo(f"{tag} {plan.name} ({plan.role}): {_summary(record)}")
        return record

    def _teachers_for(self, plan: ModelPlan) -> list[tuple[str, object]]:
        teachers = [r for r in self.records if r["role"] == ROLE_TEACHER]
        if plan.teachers == "best":
            teachers = [best_teacher(teachers)]
        from srkd_ext.models import load_model

        return [(r["name"], load_model(self.dir.root / r["checkpoint"])) for r in teachers]

    def _train_and_measure(self, plan: ModelPlan, split) -> dict:
        cfg = self.cfg
        device = cfg["device"]
        model = steps.build(plan.arch, split.num_items, cfg["max_len"], plan.hparams, f"{plan.where}.hparams",
                            cfg["seed"])
        tcfg = steps.train_config(plan.train, max_len=cfg["max_len"], seed=cfg["seed"], device=device,
                                  mask_seen=cfg["evaluation"]["mask_seen"])
        teachers, kd, kd_record = None, None, None
        if plan.teachers:
            named = self._teachers_for(plan)
            teachers = [m for _, m in named]
            cache = None
            if plan.teachers == "all" and cfg["srms"].get("teacher_cache"):
                cache = str(self.dir.root / "teacher_cache")
            kd = steps.kd_config(plan.kd["temperature"], plan.kd["alpha"], plan.kd["top_k"], plan.kd["gate_rank"],
                                 plan.kd["weights"], cache_dir=cache)
            kd_record = {"teachers": [name for name, _ in named], **plan.kd}
        out_dir = self.dir.model_dir(plan.name)
        result = steps.train_model(model, split, tcfg, out_dir, teachers=teachers, kd=kd, label=plan.name)
        ev = cfg["evaluation"]
        test = steps.evaluate_model(model, split.test, split.num_items, ev, device=device, max_len=cfg["max_len"],
                                    seed=cfg["seed"])
        return {
            "name": plan.name,
            "role": plan.role,
            "arch": plan.arch,
            "hparams": plan.hparams,
            "kd": kd_record,
            "train": plan.train,
            "valid": steps.metrics_only(result.best_valid),
            "test": steps.metrics_only(test),
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "train_seconds": result.seconds,
            "history": steps.history_rows(result.history),
            "profile": steps.profile(model, cfg["max_len"], device=device, **cfg["profile"]),
            "checkpoint": str(Path("models") / plan.name / "best.pt"),
        }


def _summary(record: dict) -> str:
    test, prof = record["test"], record["profile"]
    return (f"test {MAIN_METRIC} {test[MAIN_METRIC]:.4f}, HR@10 {test['HR@10']:.4f}, {prof['params']:,} params, "
            f"best epoch {record['best_epoch']}/{record['epochs_run']}, {record['train_seconds']:.0f} s")


def run_experiment(cfg: dict, out: Path, make_plots: bool = True) -> int:
    return Experiment(cfg, out, make_plots).run()
