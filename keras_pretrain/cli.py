"""The `keras-pretrain` command.

The backend is chosen (`--backend`, else `KERAS_BACKEND`) before anything
imports keras, because keras fixes its backend at import.

    keras-pretrain recipes
    keras-pretrain run mae_images --data photos/ --labels-per-class 10
    keras-pretrain run bert_text --data labelled.csv --unlabeled books/ --set pretrain.epochs=5
    keras-pretrain show mae_fashion_mnist --quick
    keras-pretrain run path/to/my_recipe.py --quick
    keras-pretrain run mae_fashion_mnist --backend jax --data-parallel --devices 8
    torchrun --nproc_per_node 2 -m keras_pretrain.cli run mae_fashion_mnist --backend torch --data-parallel
"""

import argparse
import os
import signal
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-pretrain",
        description="Self-supervised pre-training with Keras 3 on TensorFlow, JAX or PyTorch.",
    )
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument(
        "--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND, else tensorflow)."
    )
    backend.add_argument("--verbose", action="store_true",
                         help="Show the libraries' start-up logs and warnings (hidden by default).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("recipes", help="List the built-in recipes.", parents=[backend])

    recipe_options = argparse.ArgumentParser(add_help=False)
    recipe_options.add_argument("recipe", help="A recipe name (see `keras-pretrain recipes`) or a path to a .py file.")
    data = recipe_options.add_argument_group("data (each sets a config field; see the README's data section)")
    data.add_argument("--data", metavar="SOURCE",
                      help="Labelled data: an image folder with one subfolder per class, a text CSV/TSV/JSONL, "
                      "tfds:NAME[:SPLIT], ... (data.labelled).")
    data.add_argument("--unlabeled", nargs="+", action="extend", metavar="SOURCE",
                      help="More data for pre-training only: image folders, text files, directories, globs (data.unlabeled).")
    data.add_argument("--test", metavar="SOURCE",
                      help="A labelled test set (data.test); without it a stratified test split is held out.")
    data.add_argument("--text-column", metavar="C", help="Text column of CSV/TSV/JSONL files (data.text_column).")
    data.add_argument("--label-column", metavar="C", help="Label column of labelled tables (data.label_column).")
    data.add_argument("--data-dir", metavar="DIR", help="Where built-in data sets are looked for (data.data_dir).")
    run_options = recipe_options.add_argument_group("run")
    run_options.add_argument("--labels-per-class", type=int, metavar="K",
                             help="Labelled examples per class for fine-tuning (evaluation.labels_per_class).")
    run_options.add_argument("--pretrain-epochs", type=int, metavar="N",
                             help="Pre-training budget in passes over the data (pretrain.epochs; clears the steps and minutes).")
    run_options.add_argument("--budget-minutes", type=float, metavar="M",
                             help="Pre-training budget in minutes: the steps that fit, timed on a few steps first "
                             "(pretrain.budget_minutes; clears the steps and epochs).")
    run_options.add_argument("--objective", choices=("mae", "simmim", "latent", "mlm"),
                             help="The pre-training objective (objective): mae (default), simmim or latent for "
                             "images, mlm for text.")
    run_options.add_argument("--output", metavar="DIR", help="Where results.json and plots go (default runs/RECIPE).")
    run_options.add_argument("--export-root", metavar="DIR",
                             help="TF Serving model base path for the export (export.root, default saved_models).")
    run_options.add_argument("--seed", type=int, help="Seed of the label draw and the models (seed, default 0).")
    run_options.add_argument("--quick", action="store_true",
                             help="A smoke run of about a minute: the recipe's quick settings, then the flags.")
    run_options.add_argument("--restart", action="store_true",
                             help="Start over: drop the checkpoint and finished phases an earlier run left in the output.")
    run_options.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                             help="Override any config field, e.g. --set pretrain.epochs=3 (see `keras-pretrain show`); a pre-training "
                             "budget (pretrain.steps, epochs or budget_minutes) set here clears the other two.")

    commands.add_parser(
        "show", parents=[backend, recipe_options], help="Print a recipe's whole config, with the flags applied.",
        description="Print the config a `run` with the same arguments would use, as JSON (the distributed "
                    "pre-training flags do not change it).",
    )
    run = commands.add_parser(
        "run", parents=[backend, recipe_options], help="Run a recipe: pre-train, fine-tune, compare, export.",
        description="Run a built-in recipe by name, or your own recipe file (a .py defining one pipeline config).",
    )
    scaling = run.add_argument_group(
        "distributed pre-training", "See the README's multi-device section for launching on each backend."
    )
    scaling.add_argument("--data-parallel", action="store_true",
                         help="Replicate the model on every device and split each global batch.")
    scaling.add_argument("--model-parallel", type=int, default=1, metavar="N",
                         help="JAX: also shard attention and MLP kernels over groups of N devices.")
    scaling.add_argument("--devices", type=int, metavar="N",
                         help="Devices to use (default all; on CPU, JAX and TensorFlow get N virtual devices).")
    scaling.add_argument("--coordinator-address", metavar="HOST:PORT",
                         help="JAX multi-host: process 0's address (else $KERAS_DISTRIBUTION_JOB_ADDRESSES).")
    scaling.add_argument("--num-processes", type=int, metavar="N",
                         help="JAX multi-host: process count (else $KERAS_DISTRIBUTION_NUM_PROCESSES).")
    scaling.add_argument("--process-id", type=int, metavar="I",
                         help="JAX multi-host: this process's index (else $KERAS_DISTRIBUTION_PROCESS_ID).")

    evaluate = commands.add_parser(
        "evaluate", parents=[backend], help="Compare saved encoders on labelled data: probe, kNN, fine-tuning, label curve.",
        description="Each ENCODER is an image run's encoder.keras or a text run's preset/ directory. They are compared "
        "on the same few labels with the simple baseline and a randomly initialised encoder.",
    )
    evaluate.add_argument("encoders", nargs="+", metavar="ENCODER")
    evaluate.add_argument("--data", required=True, metavar="SOURCE", help="Labelled data, as `run --data` takes it.")
    evaluate.add_argument("--test", metavar="SOURCE", help="A labelled test set (else a stratified split is held out).")
    evaluate.add_argument("--labels-per-class", type=int, metavar="K",
                          help="Labels per class (default 10 for image encoders, 20 for text).")
    evaluate.add_argument("--frozen", action="store_true", help="Frozen features only: probe and kNN, no fine-tuning.")
    evaluate.add_argument("--output", metavar="DIR", help="Where results.json and label_curve.png go.")
    evaluate.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                          help="Override config fields, e.g. --set evaluation.curve_seeds=5 data.text_column=body.")

    bench = commands.add_parser(
        "bench", help="Training throughput on each backend, side by side with keras-hub and Hugging Face.",
        description="Each measurement in its own process: the package's objectives, keras-hub's BertMaskedLM and (when "
        "transformers is installed) Hugging Face's BertForMaskedLM and ViTMAEForPreTraining at the same sizes (their "
        "processes taking turns), a matmul peak in the dtype policy's compute dtype for MFU, the WordNet pipeline's "
        "token rate batched three ways (length buckets, by token budget, padded; in one process, taking turns), and "
        "each pipeline's input overhead (against its batches from memory, taking turns).",
    )
    bench.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    bench.add_argument("--objectives", nargs="+", choices=("mlm", "mae"), default=["mlm", "mae"])
    bench.add_argument("--steps", type=int, default=20,
                       help="Timed steps per measurement (default 20; the compared models time them in 5 turns, "
                       "each WordNet batching in 5 blocks of this many).")
    bench.add_argument("--warmup", type=int, default=5, help="Untimed steps first (compilation; default 5).")
    bench.add_argument("--rounds", type=int, default=1,
                       help="Run everything this many times; each row keeps its fastest round (default 1).")
    bench.add_argument("--mlm", nargs="+", default=[], metavar="KEY=VALUE",
                       help="MLM sizes, e.g. num_layers=12 hidden_dim=768 sequence_length=512 (BERT-base).")
    bench.add_argument("--mae", nargs="+", default=[], metavar="KEY=VALUE", help="MAE sizes, e.g. image_size=224.")
    bench.add_argument("--dtype-policy", default="float32", help="Keras dtype policy, e.g. mixed_bfloat16 on a GPU.")
    bench.add_argument("--peak-tflops", type=float, metavar="T",
                       help="MFU against this peak (a card's datasheet figure, e.g. 989 for an H100's dense bfloat16) "
                            "instead of a matrix product in the policy's compute dtype, measured in the run.")
    bench.add_argument("--no-real-data", action="store_true", help="Skip the WordNet and Fashion-MNIST pipeline rows.")
    bench.add_argument("--json", metavar="FILE", help="Also write the rows as JSON.")

    export = commands.add_parser(
        "export", parents=[backend], help="Export a saved classifier (.keras) as a verified SavedModel.",
        description="Write saved_models/NAME/VERSION/ (TF Serving layout), verified by reloading in a fresh process.",
    )
    export.add_argument("model", help="A classifier saved with model.save('....keras').")
    export.add_argument("--name", required=True, help="The model's folder name under the export root.")
    export.add_argument("--export-root", default="saved_models", metavar="DIR", help="Default saved_models.")
    export.add_argument("--version", type=int, help="Version number (default: the next free one).")
    export.add_argument("--onnx", metavar="FILE.onnx",
                        help="Also write an ONNX graph (image classifiers), verified with onnxruntime.")

    check = commands.add_parser(
        "serve-check", help="Print an export's signatures and answer a TF Serving REST request locally.",
        description='Loads saved_models/NAME (newest version) with TensorFlow alone and answers a '
        '{"instances": [...]} request as TF Serving\'s :predict would.',
    )
    check.add_argument("model_dir", help="saved_models/NAME, or one version directory.")
    check.add_argument("--version", type=int, help="Version to load (default: the newest).")
    check.add_argument("--request", metavar="FILE", help="JSON request body (default: two all-zero instances).")
    check.add_argument("--signature", default="serving_default", help="Signature to call (default serving_default).")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "backend", None):  # serve-check uses TensorFlow alone and takes no backend
        os.environ["KERAS_BACKEND"] = args.backend
    elif os.environ.get("KERAS_BACKEND", "tensorflow") not in BACKENDS:
        print(f"error: KERAS_BACKEND={os.environ['KERAS_BACKEND']!r} is not one of {', '.join(BACKENDS)}.",
              file=sys.stderr)
        return 2
    if getattr(args, "devices", None) and os.environ.get("KERAS_BACKEND") == "jax":
        force_host_devices(args.devices)
    if args.command == "bench":
        from keras_pretrain.bench import SHARE_THE_GPU

        for name, value in SHARE_THE_GPU.items():  # before `quiet` starts JAX in this process
            os.environ.setdefault(name, value)
    if not getattr(args, "verbose", False):
        from keras_pretrain.logs import quiet

        quiet()
    from keras_pretrain.checkpoints import Interrupted

    try:
        return COMMANDS[args.command](args)
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        return 128 + signal.SIGTERM
    except (ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def force_host_devices(count):
    """Let JAX on CPU show `count` devices; GPU and TPU hosts ignore it. Must precede importing JAX."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def distribution_plan(args):
    """The `DistributionPlan` the run's flags ask for (one device without them); checked before any data loads."""
    from keras_pretrain.distribute import setup

    return setup(
        data_parallel=args.data_parallel,
        model_parallel=args.model_parallel,
        devices=args.devices,
        coordinator_address=args.coordinator_address,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )


def list_recipes(args):
    from keras_pretrain.pipelines import recipe_descriptions

    descriptions = recipe_descriptions()
    width = max(map(len, descriptions))
    for name, description in sorted(descriptions.items()):
        print(f"{name:<{width}}  {description}")
    return 0


# Flags that are shorthands for config fields.
FLAG_KEYS = {
    "data": "data.labelled", "unlabeled": "data.unlabeled", "test": "data.test",
    "text_column": "data.text_column", "label_column": "data.label_column", "data_dir": "data.data_dir",
    "labels_per_class": "evaluation.labels_per_class", "pretrain_epochs": "pretrain.epochs", "objective": "objective",
    "budget_minutes": "pretrain.budget_minutes",
    "output": "output_dir", "export_root": "export.root", "seed": "seed",
}


def recipe_config(args):
    """The recipe's config with `--quick`, the shorthand flags, then every `--set`, applied in that order."""
    from keras_pretrain.config import ConfigError, UnknownKeyError
    from keras_pretrain.pipelines import apply_overrides, load_recipe

    config = load_recipe(args.recipe, quick=args.quick)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        try:
            config = apply_overrides(config, {key: value})
        except UnknownKeyError:
            option = "--" + flag.replace("_", "-")
            raise ConfigError(f"{option} does not apply to {args.recipe} ({type(config).__name__} has no {key}).") from None
    return apply_overrides(config, args.overrides)


def show_recipe(args):
    from keras_pretrain.config import to_json

    print(to_json(recipe_config(args)))
    return 0


def run_recipe(args):
    from keras_pretrain.pipelines import run

    config = recipe_config(args)  # a bad key or value fails before any device is set up
    run(config, distribution=distribution_plan(args), restart=args.restart)
    return 0


def evaluate_encoders(args):
    from keras_pretrain.pipelines.evaluate import evaluate_encoders

    overrides = ([f"evaluation.labels_per_class={args.labels_per_class}"] if args.labels_per_class else []) + args.overrides
    evaluate_encoders(args.encoders, args.data, test=args.test, overrides=overrides, output_dir=args.output,
                      finetune=not args.frozen)
    return 0


def run_benchmarks(args):
    import json

    from keras_pretrain.bench import format_table, parse_sizes, run_bench

    sizes = {objective: parse_sizes(objective, getattr(args, objective)) for objective in ("mlm", "mae")}
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise ValueError(f"--json {args.json}: its directory does not exist; create it or choose another path.")
    rows = run_bench(args.backends, args.objectives, args.steps, args.warmup, sizes, not args.no_real_data,
                     args.dtype_policy, args.rounds,
                     peak_flops=None if args.peak_tflops is None else args.peak_tflops * 1e12)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def export_model(args):
    from keras_pretrain.checkpoints import load_keras_file
    from keras_pretrain.export import export_saved_model
    from keras_pretrain.export.onnx import check_onnx_target, export_onnx

    model = load_keras_file(args.model, "pass a fine-tuned classifier, such as a run's classifiers/*.keras.")
    if args.onnx:  # before the SavedModel: a wrong --onnx must not leave a new version behind
        check_onnx_target(model, args.onnx)
    path = export_saved_model(model, args.name, root=args.export_root, version=args.version)
    worst = max(model.export_report["max_abs_diff"].values())
    print(f"Exported {args.model} to {path} (verified in a fresh process: max abs diff {worst:.2g})")
    if args.onnx:
        onnx_path = export_onnx(model, args.onnx)
        worst = max(model.onnx_report["max_abs_diff"].values())
        print(f"Exported {args.model} to {onnx_path} (verified with onnxruntime: max abs diff {worst:.2g})")
    return 0


def serve_check(args):
    import json

    from keras_pretrain.export.serve_check import load_request, serve_check

    request = load_request(args.request) if args.request else None
    signatures, request, response = serve_check(args.model_dir, request, args.version, args.signature)
    for name, signature in sorted(signatures.items()):
        describe = lambda tensors: ", ".join(f"{k}: {v['dtype']}{v['shape']}" for k, v in sorted(tensors.items()))
        print(f"signature {name}\n  inputs:  {describe(signature['inputs'])}\n  outputs: {describe(signature['outputs'])}")
    print(f"POST /v1/models/{os.path.basename(os.path.normpath(args.model_dir))}:predict with "
          f"{len(request['instances'])} instance(s) ->")
    print(json.dumps(response))
    return 0


COMMANDS = {"recipes": list_recipes, "show": show_recipe, "run": run_recipe, "evaluate": evaluate_encoders, "bench": run_benchmarks, "export": export_model, "serve-check": serve_check}

if __name__ == "__main__":
    sys.exit(main())
