"""The `ddkit` command line: parses, calls the Python API, prints. User errors are one line."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from safetensors import SafetensorError

from ddkit import __version__
from ddkit.errors import DDKitError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Dataset distillation with honest evaluation.")
console = Console(stderr=True)
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
DEVICE_HELP = "auto (a GPU when there is one), cpu, cuda or cuda:<index>"
QUICK_PRESET, FULL_PRESET = "hard-dsa-quick", "hard-dsa"  # `ddkit evaluate` without --preset, and what to pass instead
log = logging.getLogger(__name__)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ddkit {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also show debug messages"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only warnings and errors: no progress, no messages"),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"),
) -> None:
    """Options given before the command (the app's help text is set on the Typer above)."""
    from ddkit.logs import configure_logging

    if verbose and quiet:
        raise DDKitError("--verbose and --quiet contradict each other; pass one of them")
    level = logging.DEBUG if verbose else logging.WARNING if quiet or not _is_main_rank() else logging.INFO
    ctx.call_on_close(configure_logging(level, console))


def _is_main_rank() -> bool:
    """Under torchrun only rank 0 prints progress, messages and results: the other ranks only warnings and errors."""
    from ddkit.distributed import launched_world

    return launched_world().is_main


def _start(device: str):
    """The torch device of this process (cuda:LOCAL_RANK under torchrun), after joining the process group."""
    from ddkit import distributed
    from ddkit.devices import resolve_device

    target = distributed.process_device(resolve_device(device))
    distributed.start(target)
    return target


@contextmanager
def _progress() -> Iterator[Progress]:
    from ddkit.progress import make_progress

    with make_progress(console, quiet=not log.isEnabledFor(logging.INFO)) as progress:
        yield progress


def _dataset_config(dataset: str, data_root: Optional[str], overrides: dict):
    from ddkit.config import build, merge
    from ddkit.data import DatasetConfig

    base = {"name": dataset, **({"root": data_root} if data_root else {})}
    return build(DatasetConfig, merge(base, overrides), where="dataset")


def _split_overrides(args: List[str]) -> tuple[dict, dict]:
    """Split `--key=value` extras into (dataset.* overrides, the rest)."""
    from ddkit.config import parse_overrides

    parsed = parse_overrides(args)
    return parsed.pop("dataset", {}), parsed


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    if not _is_main_rank():
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@app.command(context_settings=OVERRIDES)
def run(
    ctx: typer.Context,
    preset: str = typer.Argument(..., help="run preset name (ddkit list presets) or a .yaml file"),
    out: Path = typer.Option(None, help="run directory (default: runs/<preset>)"),
    data_root: Optional[str] = typer.Option(None, help="dataset directory or file"),
    cache: Optional[Path] = typer.Option(None, help="teacher cache (default: $DDKIT_CACHE or ~/.cache/ddkit)"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Run a whole pipeline preset: synthesize, evaluate and report. Extra --key=value override it."""
    from ddkit.config import parse_overrides
    from ddkit.pipeline import load_run_config, run_pipeline
    from ddkit.report import collect_rows

    overrides = parse_overrides(ctx.args)
    if data_root:
        overrides.setdefault("dataset", {})["root"] = data_root
    config = load_run_config(preset, overrides)
    out = out or Path("runs") / Path(preset).stem
    target = _start(device)
    with _progress() as progress:
        run_pipeline(config, out, cache, progress, target)
    _print_leaderboard(collect_rows(out))
    log.info("report: %s", out / "report" / "leaderboard.md")


def _print_leaderboard(rows: list[dict]) -> None:
    _print_table(
        "test top-1 (%)", ["preset", "student", "method", "IPC", "mean ± std", "seeds"],
        [[r["preset"] + (" QUICK" if r["quick"] else ""), r["student"], r["method"], str(r["ipc"]),
          f"{r['mean']:.2f} ± {r['std']:.2f}", str(len(r["seeds"]))] for r in rows],
    )


@app.command(context_settings=OVERRIDES)
def squeeze(
    ctx: typer.Context,
    teachers: List[str] = typer.Argument(None, help="teacher recipes (ddkit list presets); default: the default panel"),
    dataset: str = typer.Option("fashion-mnist", help="dataset (ddkit list datasets)"),
    data_root: Optional[str] = typer.Option(None, help="dataset directory or file"),
    cache: Optional[Path] = typer.Option(None, help="teacher cache (default: $DDKIT_CACHE or ~/.cache/ddkit)"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Train teachers (or reuse the cached ones) and print their accuracy and training time."""
    from ddkit.data import load_dataset
    from ddkit.models.teachers import DEFAULT_PANEL, load_or_squeeze, teacher_config

    # The variadic argument also swallows `--key=value` extras: sort them back out.
    extras = [t for t in teachers or [] if t.startswith("--")]
    names = [t for t in teachers or [] if t not in extras] or list(DEFAULT_PANEL)
    dataset_overrides, recipe_overrides = _split_overrides(extras + ctx.args)
    configs = [teacher_config(name, recipe_overrides) for name in names]  # every error before any training
    target = _start(device)
    splits = load_dataset(_dataset_config(dataset, data_root, dataset_overrides))
    rows = []
    with _progress() as progress:
        for name, config in zip(names, configs):
            teacher = load_or_squeeze(config, splits, cache, progress, target)
            info = teacher.info
            rows.append([name, f"{info['val_accuracy']:.2f}", f"{info['test_accuracy']:.2f}",
                         f"{info['train_seconds']:.0f}", info["path"]])
    _print_table(f"teachers on {splits.name}", ["teacher", "val %", "test %", "train s", "cache"], rows)


@app.command(name="squeeze-prior", context_settings=OVERRIDES)
def squeeze_prior(
    ctx: typer.Context,
    recipe: str = typer.Argument("fashion-mnist-unet", help="prior recipe (ddkit list presets)"),
    dataset: str = typer.Option("fashion-mnist", help="dataset (ddkit list datasets)"),
    data_root: Optional[str] = typer.Option(None, help="dataset directory or file"),
    cache: Optional[Path] = typer.Option(None, help="cache (default: $DDKIT_CACHE or ~/.cache/ddkit)"),
    retrain: bool = typer.Option(False, help="train into the cache even if a cached or shipped prior matches"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Train a diffusion prior, class- or text-conditioned (or reuse the cached/shipped one); print its quality."""
    from ddkit.data import load_dataset
    from ddkit.diffusion.train import entry_name, prior_recipe, resolve_prior
    from ddkit.models.teachers import TeacherPool

    # The optional argument swallows a leading `--key=value` extra: sort it back out.
    extras = [recipe] if recipe.startswith("--") else []
    dataset_overrides, recipe_overrides = _split_overrides(extras + ctx.args)
    config = prior_recipe("fashion-mnist-unet" if extras else recipe, recipe_overrides)
    target = _start(device)
    splits = load_dataset(_dataset_config(dataset, data_root, dataset_overrides))
    with _progress() as progress:
        prior = resolve_prior(config, splits, TeacherPool(splits, cache, progress, target), cache, progress, target, retrain)
    metrics = prior.meta["metrics"]
    per_class = ", ".join(f"{v:.0f}" for v in metrics["teacher_agreement_per_class"])
    _print_table(f"prior {entry_name(config, splits)} on {splits.name}", ["parameters", "train s", "teacher agreement %", "per class", "path"],
                 [[f"{metrics['parameters']:,}", f"{metrics['train_seconds']:.0f}", f"{metrics['teacher_agreement']:.2f}",
                   per_class, prior.meta["source"]]])


@app.command(context_settings=OVERRIDES)
def synthesize(
    ctx: typer.Context,
    method: str = typer.Argument(..., help="method (ddkit list methods)"),
    ipc: int = typer.Option(..., help="images per class"),
    out: Path = typer.Option(..., help="output directory of the distilled set"),
    dataset: str = typer.Option("fashion-mnist", help="dataset (ddkit list datasets)"),
    data_root: Optional[str] = typer.Option(None, help="dataset directory or file"),
    seed: int = typer.Option(0),
    cache: Optional[Path] = typer.Option(None, help="teacher cache"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Make a distilled set with METHOD; extra --key=value set the method's config."""
    from ddkit.data import load_dataset
    from ddkit.data.distilled import DISTILLED_SET
    from ddkit.models.teachers import TeacherPool
    from ddkit.pipeline import make_set
    from ddkit.runs import check_output

    check_output(out, DISTILLED_SET)  # before anything is loaded: a wrong --out costs nothing
    dataset_overrides, options = _split_overrides(ctx.args)
    dataset_cfg = _dataset_config(dataset, data_root, dataset_overrides)
    target = _start(device)
    splits = load_dataset(dataset_cfg)
    with _progress() as progress:
        distilled = make_set(method, options, ipc, seed, splits, dataset_cfg, TeacherPool(splits, cache, progress, target), out, progress)
    log.info("%d images (%d per class) in %s", len(distilled), distilled.ipc, out)


@app.command(context_settings=OVERRIDES)
def evaluate(
    ctx: typer.Context,
    distilled_set: Path = typer.Argument(..., help="a distilled set directory"),
    preset: Optional[List[str]] = typer.Option(None, help=f"evaluation preset(s) (ddkit list presets); default: {QUICK_PRESET}, a QUICK check"),
    students: Optional[str] = typer.Option(None, help="comma-separated student models for a cross-architecture table; "
                                           "options in brackets: 'convnet(depth=6,norm=instance),resnet-ap'"),
    teacher: Optional[str] = typer.Option(None, help="teacher of the soft-label presets instead of their default (a recipe, "
                                          "a .yaml file or an ensemble a+b)"),
    data_root: Optional[str] = typer.Option(None, help="dataset directory or file (default: the set's own)"),
    cache: Optional[Path] = typer.Option(None, help="teacher cache"),
    diversity: Optional[str] = typer.Option(None, help="comma-separated extractor teachers for intra-class diversity, e.g. convnet-in,mlp"),
    fidelity: Optional[str] = typer.Option(None, help="comma-separated extractor teachers for PRDC/FID/KID against test images, e.g. convnet-in"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    parallel: str = typer.Option("auto", help="under torchrun: spread (each rank trains whole (student, seed) runs), "
                                 "ddp (every rank trains each student together) or auto (ddp from 5,000 images)"),
) -> None:
    """Train fresh students on a set under named presets; print mean ± std over the preset's seeds."""
    from ddkit.config import build
    from ddkit.data import DatasetConfig, DistilledSet, load_dataset
    from ddkit.distributed import on_main
    from ddkit.evaluate import evaluate_set, load_eval_preset
    from ddkit.evaluate.diversity import measure_diversity
    from ddkit.evaluate.fidelity import measure_fidelity
    from ddkit.evaluate.students import check_preset_fits
    from ddkit.models import parse_model_spec, split_top_level
    from ddkit.models.teachers import TeacherPool
    from ddkit.runs import check_writable

    distilled = DistilledSet.load(distilled_set)
    check_writable(distilled_set)  # before any student trains
    dataset_overrides, rest = _split_overrides(ctx.args)
    if rest:
        raise DDKitError(f"unknown option(s) {', '.join(rest)}; presets are frozen: pick another preset instead")
    if not preset:
        preset = [QUICK_PRESET]
        if _is_main_rank():
            console.print(_quick_notice(), highlight=False, soft_wrap=True)
    presets = [load_eval_preset(name, teacher) for name in preset]
    for chosen in presets:  # every preset must fit before the first student trains
        check_preset_fits(chosen, distilled)
    source = distilled.meta.get("dataset", {}) | dataset_overrides | ({"root": data_root} if data_root else {})
    splits = load_dataset(build(DatasetConfig, source, where="dataset"))
    specs = [parse_model_spec(s) for s in split_top_level(students)] if students else None
    target = _start(device)
    rows = []
    with _progress() as progress:
        teachers = TeacherPool(splits, cache, progress, target)
        extractors = {n.strip(): teachers(n.strip()) for n in diversity.split(",")} if diversity else {}
        for record in on_main(lambda: measure_diversity(distilled, distilled_set, splits.train, extractors)):
            rows.append(["diversity", record["name"], f"cos {record['mean']} (real {record['real_mean']})", "", "–"])
        extractors = {n.strip(): teachers(n.strip()) for n in fidelity.split(",")} if fidelity else {}
        for record in on_main(lambda: measure_fidelity(distilled, distilled_set, splits.train, splits.test, extractors)):
            real = record["real_reference"]
            rows.append(["fidelity", record["name"],
                         f"P {record['precision']:.2f} R {record['recall']:.2f} D {record['density']:.2f} "
                         f"C {record['coverage']:.2f} FID {record['fid']:.4g} KID {record['kid_mean']:.3g} "
                         f"(real: FID {real['fid']:.4g} C {real['coverage']:.2f})", "", "–"])
        for chosen in presets:
            for summary in evaluate_set(distilled, chosen, splits, distilled_set / "eval", specs, teachers, progress, target,
                                        parallel):
                rows.append([summary.preset + (" QUICK" if summary.quick else ""), summary.student, summary.text(),
                             ", ".join(f"{a:.2f}" for a in summary.accuracies), summary.teacher or "–"])
                if summary.shift_means:
                    rows.append(["  shifted test sets", summary.student,
                                 ", ".join(f"{k} {v:.2f}" for k, v in summary.shift_means.items()), "", ""])
    _print_table(f"{distilled_set} — test top-1 (%)", ["preset", "student", "mean ± std", "per seed", "teacher"], rows)


@app.command(name="import", context_settings=OVERRIDES)
def import_set(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="an ImageFolder tree SRC/<class>/*.png|jpg, or an .npz/.pt of images, labels [, soft_labels]"),
    out: Path = typer.Option(..., help="output directory of the ddkit set"),
    dataset: str = typer.Option("fashion-mnist", help="the real dataset the set is evaluated against (ddkit list datasets)"),
    data_root: Optional[str] = typer.Option(None, help="dataset directory or file"),
    normalised: bool = typer.Option(False, help="float images are normalised with the dataset's mean/std: undo it"),
    soft_logits: bool = typer.Option(False, help="soft labels are logits: softmax them"),
    resize: bool = typer.Option(False, help="resize images to the dataset's image size"),
) -> None:
    """Turn a set made by another tool into a ddkit set, so 'ddkit evaluate' scores it under our presets."""
    from ddkit.data.importer import ImportOptions
    from ddkit.data.importer import import_set as run_import

    dataset_overrides, rest = _split_overrides(ctx.args)
    if rest:
        raise DDKitError(f"unknown option(s) {', '.join(rest)}; see 'ddkit import --help'")
    distilled = run_import(source, out, _dataset_config(dataset, data_root, dataset_overrides),
                           ImportOptions(normalised=normalised, soft_logits=soft_logits, resize=resize))
    soft = ", with soft labels" if distilled.soft_labels is not None else ""
    console.print(f"{len(distilled)} images ({distilled.ipc} per class{soft}) in {out}; score them with 'ddkit evaluate {out}'", soft_wrap=True)


def _quick_notice() -> str:
    from ddkit.evaluate import load_eval_preset

    quick = load_eval_preset(QUICK_PRESET)
    return (f"no --preset given: {quick.name} gives QUICK numbers ({quick.train.epochs} epochs, {quick.test_subset:,} test images), "
            f"for checking the pipeline, not for comparing methods; pass --preset {FULL_PRESET} for the full protocol")


@app.command()
def report(directory: Path = typer.Argument(..., help="a run directory or a distilled set")) -> None:
    """Write the leaderboard (Markdown + JSON), image grids and accuracy-vs-IPC plots."""
    from ddkit.report import collect_rows, write_report

    out = write_report(directory)
    _print_leaderboard(collect_rows(directory))
    log.info("report written to %s", out)


@app.command(name="list")
def list_entries(what: str = typer.Argument(..., help="methods, models, presets or datasets")) -> None:
    """List what is registered."""
    from ddkit.data import DATASETS
    from ddkit.models import describe_models
    from ddkit.presets import KINDS, USED_AS, preset_names

    if what == "methods":
        _print_table("methods: set an option with --name=value (nested: --sampler.steps=20)",
                     ["method", "option", "type", "default", "help"], _method_rows())
    elif what == "models":
        _print_table("models", ["model", "options"], [[n, d] for n, d in describe_models().items()])
    elif what == "presets":
        _print_table("presets", ["kind", "names", "used as"], [[k, ", ".join(preset_names(k)), USED_AS[k]] for k in KINDS])
    elif what == "datasets":
        _print_table("datasets", ["dataset"], [[n] for n in DATASETS.names()])
    else:
        raise DDKitError(f"cannot list {what!r}; choose one of: methods, models, presets, datasets")


def _method_rows() -> list[list[str]]:
    """One row per option; the method's name (and the extras it needs) on its first row."""
    from ddkit.config_help import describe_options
    from ddkit.methods import METHODS

    rows = []
    for name in METHODS.names():
        method = METHODS.get(name)
        label = name + (f"\nneeds: {', '.join(method.extras)}" if method.extras else "")
        options = describe_options(method.config_class)
        if not options:
            rows.append([label, "–", "", "", "no options"])
        # Defaults such as [convnet-bn] would otherwise be read as rich markup.
        rows += [[label if i == 0 else "", *(escape(v) for v in (o.name, o.type, o.default, o.help))] for i, o in enumerate(options)]
    return rows


INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}


def main() -> None:
    """Run the app; every user error ends as one line on stderr and exit code 2, Ctrl-C as 130."""
    from ddkit import distributed

    try:
        code = app(standalone_mode=False)
    except DDKitError as err:
        _fail(str(err))
    except typer.TyperException as err:  # typer's (vendored click) usage errors: bad value, missing option, no such command
        context = getattr(err, "ctx", None)
        command = f"ddkit {context.info_name} --help" if context and context.parent else "ddkit --help"
        message = err.format_message().rstrip(".")
        _fail(f"{message}{' ' if message.endswith('?') else '; '}see '{command}'")
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    except (OSError, SafetensorError) as err:
        number = _os_error_number(err)
        if number not in WRITE_ERRORS:
            raise
        _fail(f"cannot write {getattr(err, 'filename', None) or 'an output'}: {os.strerror(number)}; free space there "
              "or pass another path (nothing half-written was kept)")
    finally:
        distributed.stop()
    if code == INTERRUPTED:  # typer turns Ctrl-C into this exit code without raising
        console.print("interrupted: finished work is kept; run the same command again to resume")
    if isinstance(code, int) and code:
        sys.exit(code)


def _os_error_number(err: Exception) -> Optional[int]:
    """errno of an OSError, or of the I/O error inside a safetensors error (its Rust writer reports
    "... (os error 28)" as text: diffusers' save_pretrained writes through it)."""
    if isinstance(err, OSError):
        return err.errno
    found = re.search(r"\(os error (\d+)\)", str(err))
    return int(found.group(1)) if found else None


def _fail(message: str) -> None:
    from ddkit.distributed import launched_world

    world = launched_world()
    rank = f"[rank {world.rank}] " if world.distributed else ""  # every rank reports; say which one speaks
    console.print(f"[red]error:[/red] {escape(rank + message)}", highlight=False, soft_wrap=True)  # "ddkit[text]" is not markup
    sys.exit(2)


if __name__ == "__main__":
    main()
