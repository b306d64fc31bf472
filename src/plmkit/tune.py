"""`plm tune`: hyper-parameter search with optuna. Each trial is one full `api.finetune` run on a copy of the config
whose learning rate, batch size, epochs, warm-up (and LoRA rank) are drawn by a seeded TPE sampler; trials that
score below the median at the same evaluation are pruned. Try it (docs/tuning.md):
    plm tune --model runs/quickstart/final --task classification --train train.tsv --validation dev.tsv --trials 10
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plmkit.config import RunConfig, load_config, save_config
from plmkit.errors import ConfigError, Interrupted, PlmError, TrainingError
from plmkit.training.logging import stderr

ALIASES = {"lr": "train.lr", "batch_size": "train.batch_size", "epochs": "train.epochs",
           "warmup_ratio": "train.warmup_ratio", "lora_r": "adapter.r"}
"""Short names --param accepts; any other config key is given in full (train.weight_decay)."""
WRITTEN = ("trials.jsonl", "results.md", "best.yaml", "tune.png", "config.yaml")
"""What a search writes in its folder besides the trial-NNN/ runs; --overwrite deletes these first."""
SPEC_HELP = "LOW:HIGH (a range; integers if both bounds are), LOW:HIGH:log (log scale), a,b,c (choices) or off"
STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


def default_space(cfg: RunConfig) -> dict[str, BaseDistribution]:
    """The search space when no --param changes it: config key -> optuna distribution."""
    space: dict[str, BaseDistribution] = {
        "train.lr": FloatDistribution(1e-5, 1e-3, log=True),
        "train.batch_size": CategoricalDistribution([8, 16, 32, 64]),
        "train.warmup_ratio": FloatDistribution(0.0, 0.2),
    }
    if cfg.train.epochs is not None and int(cfg.train.epochs) >= 2:  # 1 epoch (or max_steps): kept as configured
        space["train.epochs"] = IntDistribution(1, int(cfg.train.epochs))
    if cfg.adapter.name == "lora":
        space["adapter.r"] = CategoricalDistribution([4, 8, 16, 32])
    return space


def parse_param(text: str) -> tuple[str, BaseDistribution | None]:
    """`lr=1e-5:1e-3:log` -> ("train.lr", FloatDistribution(1e-5, 1e-3, log=True)); `epochs=off` -> ("train.epochs",
    None), which takes the key out of the space (it keeps its configured value).

    Raises:
        ConfigError: the text is not NAME=SPEC, or SPEC is not one of the forms in SPEC_HELP.
    """
    name, sep, spec = (part.strip() for part in text.partition("="))
    if not sep or not name or not spec:
        raise ConfigError(f"--param {text!r} must look like NAME=SPEC, with SPEC {SPEC_HELP}; e.g. lr=1e-5:1e-3:log")
    key = ALIASES.get(name, name)
    if "." not in key:
        raise ConfigError(f"--param {text!r}: unknown name {name!r}; use one of {', '.join(ALIASES)} or a config "
                          "key such as train.weight_decay")
    if key == "run.output_dir":
        raise ConfigError("--param run.output_dir: plm tune sets each trial's folder itself; use --out")
    if spec == "off":
        return key, None
    if ":" in spec:
        parts = spec.split(":")
        log = len(parts) == 3 and parts[2] == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ConfigError(f"--param {text!r}: a range is LOW:HIGH or LOW:HIGH:log")
        low, high = (_number(p, text) for p in parts[:2])
        if not low < high:
            raise ConfigError(f"--param {text!r}: LOW must be below HIGH")
        if log and low <= 0:
            raise ConfigError(f"--param {text!r}: a log-scale range needs LOW > 0")
        if isinstance(low, int) and isinstance(high, int):
            return key, IntDistribution(low, high, log=log)
        return key, FloatDistribution(float(low), float(high), log=log)
    if "," in spec:
        choices = [_scalar(c.strip()) for c in spec.split(",") if c.strip()]
        if len(choices) < 2 or len(set(map(repr, choices))) < len(choices):
            raise ConfigError(f"--param {text!r}: give two or more different choices, a,b,c")
        return key, CategoricalDistribution(choices)
    raise ConfigError(f"--param {text!r}: SPEC must be {SPEC_HELP}; to fix one value use --set {key}={spec}")


def _number(text: str, param: str) -> int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise ConfigError(f"--param {param!r}: {text!r} is not a number")


def _scalar(text: str):
    """A choice as written: 8 -> int, 1e-4 -> float, true -> bool, anything else -> str."""
    try:
        return _number(text, text)
    except ConfigError:
        value = yaml.safe_load(text)
        return value if isinstance(value, (bool, str)) or value is None else text


def build_space(cfg: RunConfig, params: Sequence[str] = ()) -> dict[str, BaseDistribution]:
    """The default space changed by `--param NAME=SPEC` entries, in order (syntax only; see _check_space)."""
    space = default_space(cfg)
    for text in params:
        key, dist = parse_param(text)
        if dist is None:
            space.pop(key, None)
        else:
            space[key] = dist
    if not space:
        raise ConfigError("the search space is empty (every --param is off); give at least one NAME=SPEC")
    unused = [key for key in space if key.startswith("adapter.")] if cfg.adapter.name == "none" else []
    if unused:
        raise ConfigError(f"--param {', '.join(unused)}: only LoRA uses it, and this search fine-tunes every weight; "
                          "add --lora (adapter.name=lora) or leave it out")
    fixed = [key for key in space if key.startswith(("model.", "tokenizer.train."))]
    if fixed:
        raise ConfigError(f"--param {', '.join(fixed)}: fine-tuning takes the model and its tokenizer as init.from "
                          "has them, so this setting is not used and every trial would be the same run; leave it "
                          "out")
    return space


def _yaml_value(value) -> str:
    """A value as an override writes it: 1e-05 -> 1.0e-05 (a float to YAML, which a bare 1e-05 is not)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _trial_config(base: Path, params: dict, output_dir: Path | str) -> RunConfig:
    """The base config with the drawn values, loaded (so typed and validated) as `plm finetune` would load it."""
    overrides = [f"{key}={_yaml_value(value)}" for key, value in params.items()]
    return load_config(base, [*overrides, f"run.output_dir={_yaml_value(str(output_dir))}"])


def _check_space(base: Path, space: dict[str, BaseDistribution]) -> None:
    """Every bound and choice must give a valid config: a typo or an out-of-range value stops before trial 0."""
    for key, dist in space.items():
        values = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        for value in values:
            try:
                _trial_config(base, {key: value}, base.parent)
            except ConfigError as e:
                raise ConfigError(f"--param {key}: {e}") from None


def _suggest(trial: optuna.Trial, key: str, dist: BaseDistribution):
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(key, dist.choices)


def metric_key(cfg: RunConfig) -> str:
    """The eval_<metric> key the search optimises: eval.select_best_by, else the task's main metric."""
    from plmkit.tasks import tasks

    if cfg.task is None:
        raise PlmError("no task: pass --task classification|multilabel|ner or set task.name in the config")
    name = cfg.eval.select_best_by or tasks.get(cfg.task.name).factory.main_metric
    return name if name.startswith("eval_") else f"eval_{name}"


def tune(cfg: RunConfig, *, trials: int, out: str | Path | None = None, space: Sequence[str] = (),
         timeout: float | None = None, overwrite: bool = False, keep_all: bool = False, show_progress: bool = True,
         sampler: optuna.samplers.BaseSampler | None = None, pruner: optuna.pruners.BasePruner | None = None) -> dict:
    """`plm tune`: `trials` fine-tuning runs of `cfg` with values drawn from the search space; the best by the task's
    metric on validation is kept. Writes trial-NNN/ runs, trials.jsonl, results.md, best.yaml and tune.png in OUT.

    Args:
        trials: how many trials to run (fewer when `timeout` runs out first).
        out: the search folder; default run.output_dir + "-tune".
        space: `NAME=SPEC` changes to the default space (see `parse_param`), e.g. ["lr=1e-4:1e-2:log", "epochs=off"].
        timeout: start no new trial after this many seconds.
        overwrite: delete an earlier search in OUT first (otherwise OUT holding one is an error).
        keep_all: keep every trial's final/ and checkpoints/; by default only the best trial's final/ is kept.
        sampler: default TPESampler(seed=run.seed), so the same config draws the same values.
        pruner: default MedianPruner(n_startup_trials=3, n_warmup_steps=2): from its second evaluation, a trial
            stops when its best score is below the median of the finished trials at the same evaluation.

    Returns:
        metric, direction, best_value, best_params, best_trial, trials (complete / pruned / failed counts),
        output_dir, best_model (the best trial's final/) and best_config (best.yaml).

    Raises:
        PlmError: a trial failed for a reason other than a diverging loss (the search stops at once), or no trial
            completed.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PlmError("plm tune runs its trials one after another in one process; run it without torchrun")
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1; got {trials}")
    key = metric_key(cfg)
    direction = "minimize" if key == "eval_loss" else "maximize"
    search_space = build_space(cfg, space)
    out = Path(out) if out is not None else Path(str(cfg.run.output_dir).rstrip("/") + "-tune")
    base = out / "config.yaml"  # the resolved config the search starts from
    with tempfile.TemporaryDirectory() as scratch:  # checked before --overwrite deletes an earlier search
        draft = Path(scratch) / "config.yaml"
        save_config(cfg, draft)
        try:
            _check_space(draft, search_space)
        except ConfigError as e:
            raise ConfigError(str(e).replace(str(draft), str(base))) from None
    _claim_search_dir(out, overwrite)
    save_config(cfg, base)
    from plmkit.api import warn_unused_settings

    warn_unused_settings(cfg)  # once: the trials' own runs do not say it

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial instead of optuna's log records
    study = optuna.create_study(direction=direction, sampler=sampler or optuna.samplers.TPESampler(seed=cfg.run.seed),
                                pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
    stderr.print(f"tune: {trials} trials on {key.removeprefix('eval_')} ({direction}) over "
                 f"{', '.join(f'{k} {_dist_text(d)}' for k, d in search_space.items())}; runs in {out}")
    stops: list[Interrupted] = []
    objective = _objective(search_space, base, out, key, stops)
    progress = Progress(TextColumn("[bold]tune"), BarColumn(bar_width=12), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=stderr, disable=not show_progress, transient=True)
    try:
        with progress:
            bar = progress.add_task("tune", total=trials)

            def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
                _report(trial, key)
                _write_trials(study, out / "trials.jsonl")
                if not keep_all:
                    _prune_folders(study, trial, out)
                _free_memory()
                progress.advance(bar)

            study.optimize(objective, n_trials=trials, timeout=timeout, catch=(TrainingError,),
                           callbacks=[after_trial], gc_after_trial=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
        if study.trials:
            _write_trials(study, out / "trials.jsonl")
            (out / "results.md").write_text(render_results(study, key, cfg.run.name), encoding="utf-8")
            plot_trials(study, key, out / "tune.png")
        if any(t.state == TrialState.COMPLETE for t in study.trials):  # also when the search was stopped
            save_config(_trial_config(base, study.best_trial.params, cfg.run.output_dir), out / "best.yaml")
    if stops:
        raise stops[0]
    counts = {state: sum(STATES.get(t.state) == state for t in study.trials) for state in STATES.values()}
    if not counts["complete"]:
        raise PlmError(f"no trial completed ({counts['pruned']} pruned, {counts['failed']} failed; see "
                       f"{out / 'results.md'}); if the loss diverged, narrow the learning rate, e.g. "
                       "--param lr=1e-5:1e-4:log")
    best = study.best_trial
    result = {"metric": key.removeprefix("eval_"), "direction": direction, "best_value": best.value,
              "best_params": best.params, "best_trial": best.number, "trials": counts, "output_dir": str(out),
              "best_model": str(_trial_dir(out, best.number) / "final"), "best_config": str(out / "best.yaml")}
    stderr.print(f"best: trial {best.number}, {result['metric']} {best.value:.4f} with {_params_text(best.params)}; "
                 f"train it again with `plm finetune {out / 'best.yaml'}`")
    return result


def _objective(space: dict[str, BaseDistribution], base: Path, out: Path, key: str, stops: list[Interrupted]):
    """The trial function. A signal during a trial's last step lets the trial finish: it counts, the search stops
    after it, and the signal lands in `stops` for tune to raise once the results are written."""
    from plmkit.api import finetune

    def objective(trial: optuna.Trial) -> float:
        params = {k: _suggest(trial, k, dist) for k, dist in space.items()}
        trial_cfg = _trial_config(base, params, _trial_dir(out, trial.number))
        stderr.print(f"trial {trial.number}: {_params_text(params)}")
        evaluations = 0

        def on_eval(step: int, row: dict) -> None:  # evaluation numbers, not steps: batch sizes differ by trial
            nonlocal evaluations
            if key not in row:  # the loop's best-checkpoint tracking raises the clear error
                return
            evaluations += 1
            trial.set_user_attr("step", step)
            trial.report(row[key], evaluations)
            stderr.print(f"trial {trial.number}  step {step:>6}  {key.removeprefix('eval_')} {row[key]:.4f}")
            if trial.should_prune():
                raise optuna.TrialPruned(f"at evaluation {evaluations} (step {step})")

        try:
            result = finetune(trial_cfg, overwrite=True, show_progress=False, on_eval=on_eval, resumable=False)
        except TrainingError as e:  # a diverging loss: this trial failed, the search goes on
            trial.set_user_attr("error", str(e))
            raise
        except Interrupted as e:  # Ctrl-C or SIGTERM: the search ends with what finished
            if e.completed is not None:  # during the last step: the trial finished
                stops.append(Interrupted(f"trial {trial.number}: a stop signal came during its last step, so it "
                                         f"finished; the search stopped after it (results.md and best.yaml in {out} "
                                         "hold the trials that finished; a search is not resumed)", e.exit_code))
                trial.study.stop()
                trial.set_user_attr("step", e.completed.metrics["steps"])
                return e.completed.metrics[f"best_{key}"]
            trial.set_user_attr("error", str(e))
            raise Interrupted(f"trial {trial.number}: {e}; the search stopped (results.md and best.yaml in {out} hold "
                              "the trials that finished; a search is not resumed)", e.exit_code) from e
        except PlmError as e:  # a config or data error fails every trial alike: stop
            trial.set_user_attr("error", str(e))
            raise type(e)(f"trial {trial.number} ({_params_text(params)}): {e}; the search stopped") from e
        trial.set_user_attr("step", result.metrics["steps"])
        return result.metrics[f"best_{key}"]

    return objective


def _claim_search_dir(out: Path, overwrite: bool) -> None:
    if (out / "trials.jsonl").exists() and not overwrite:
        raise PlmError(f"{out} already holds a search (trials.jsonl); pass --overwrite to start again or --out to "
                       "use another folder")
    if overwrite:
        for name in WRITTEN:
            (out / name).unlink(missing_ok=True)
        for folder in out.glob("trial-*"):
            if folder.is_dir() and re.fullmatch(r"trial-\d{3,}", folder.name):
                shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)


def _trial_dir(out: Path, number: int) -> Path:
    return out / f"trial-{number:03d}"


def _prune_folders(study: optuna.Study, trial: FrozenTrial, out: Path) -> None:
    """Keep only the best trial's final/; drop every checkpoints/ (final/ already holds the best weights)."""
    shutil.rmtree(_trial_dir(out, trial.number) / "checkpoints", ignore_errors=True)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = study.best_trial.number if complete else None
    for t in study.trials:
        if t.number != best:
            shutil.rmtree(_trial_dir(out, t.number) / "final", ignore_errors=True)


def _free_memory() -> None:
    """A pruned or failed trial leaves its model in the exception's frames: collect them before the next trial."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def trial_row(trial: FrozenTrial) -> dict:
    """One trials.jsonl row: number, state, value (complete trials), last score (pruned), params, seconds, step."""
    row = {"number": trial.number, "state": STATES.get(trial.state, trial.state.name.lower()),
           "value": trial.value if trial.state == TrialState.COMPLETE else None, "params": trial.params,
           "seconds": round(trial.duration.total_seconds(), 2) if trial.duration else None,
           "step": trial.user_attrs.get("step")}
    if trial.intermediate_values:
        row["last_score"] = trial.intermediate_values[max(trial.intermediate_values)]
    if "error" in trial.user_attrs:
        row["error"] = trial.user_attrs["error"]
    return row


def _write_trials(study: optuna.Study, path: Path) -> None:
    path.write_text("".join(json.dumps(trial_row(t)) + "\n" for t in study.trials), encoding="utf-8")


def _report(trial: FrozenTrial, key: str) -> None:
    row, metric = trial_row(trial), key.removeprefix("eval_")
    if row["state"] == "complete":
        text = f"{metric} {row['value']:.4f}"
    elif row["state"] == "pruned":
        text = f"[yellow]pruned[/] at step {row['step']} ({metric} {row.get('last_score', math.nan):.4f})"
    else:
        text = f"[red]failed[/]: {row.get('error', 'see the log above')}"
    stderr.print(f"trial {trial.number} done in {row['seconds']:.0f} s: {text}")


def _sorted_rows(study: optuna.Study) -> list[dict]:
    """Complete trials best first, then pruned ones by their last score, then failed ones."""
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    rank = {"complete": 0, "pruned": 1}
    rows = [trial_row(t) for t in study.trials]
    return sorted(rows, key=lambda r: (rank.get(r["state"], 2), sign * (r["value"] if r["value"] is not None else
                                                                       r.get("last_score", 0.0)), r["number"]))


def render_results(study: optuna.Study, key: str, name: str) -> str:
    """results.md: one row per trial, sorted by the metric (the best first)."""
    rows = _sorted_rows(study)
    keys = sorted({k for r in rows for k in r["params"]})
    metric = key.removeprefix("eval_")
    lines = [f"# Hyper-parameter search: {name}", "",
             (f"{len(rows)} trials, best {metric} on validation first ({study.direction.name.lower()}); pruned "
              "trials show their last score. The best trial's config is best.yaml."), "",
             "| trial | state | " + metric + " | " + " | ".join(f"`{k}`" for k in keys) + " | step | seconds |",
             "|---" * (len(keys) + 5) + "|"]
    for r in rows:
        score = r["value"] if r["value"] is not None else r.get("last_score")
        cells = [str(r["number"]), r["state"], "-" if score is None else f"{score:.4f}"]
        cells += [_value_text(r["params"].get(k)) for k in keys]
        cells += ["-" if r["step"] is None else str(r["step"]), "-" if r["seconds"] is None else f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", *(f"- trial {r['number']}: {r['error']}" for r in failed)]
    return "\n".join(lines) + "\n"


def plot_trials(study: optuna.Study, key: str, path: Path) -> Path:
    """tune.png: the metric of each trial (pruned ones at their last score, marked x; failed ones as red lines)
    and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, metric = [trial_row(t) for t in study.trials], key.removeprefix("eval_")
    complete = [(r["number"], r["value"]) for r in rows if r["state"] == "complete"]
    pruned = [(r["number"], r["last_score"]) for r in rows if r["state"] == "pruned" and "last_score" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if complete:
        ax.plot(*zip(*complete), "o", label="complete")
        best, better = [], max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        for _, value in complete:
            best.append(value if not best else better(best[-1], value))
        ax.step([n for n, _ in complete], best, where="post", color="tab:green", label="best so far")
        top = next(c for c in complete if c[1] == best[-1])
        ax.plot(*top, "*", color="tab:orange", ms=14, label=f"best (trial {top[0]})")
    if pruned:
        ax.plot(*zip(*pruned), "x", color="tab:gray", ms=8, label="pruned (last score)")
    for i, r in enumerate(r for r in rows if r["state"] == "failed"):
        ax.axvline(r["number"], color="tab:red", ls=":", label="failed" if i == 0 else None)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} (validation)")
    ax.set_title(f"{len(rows)} trials: {metric} per trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _dist_text(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "{" + ",".join(map(_value_text, dist.choices)) + "}"
    return f"{_value_text(dist.low)}..{_value_text(dist.high)}{' (log)' if dist.log else ''}"


def _value_text(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "-" if value is None else str(value)


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={_value_text(v)}" for k, v in params.items())
