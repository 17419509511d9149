import json
import os
import re
import textwrap

import keras
import pytest

from keras_pretrain import bench, cli
from keras_pretrain.pipelines import load_recipe, recipe_descriptions
from tests.conftest import run_python, write_image_folder, write_labelled_csv

# Smoke-run sizes: the CLI tests check the path from flags to files, not the models.
TINY_IMAGES = ["encoder.hidden_dim=16", "encoder.depth=1", "encoder.num_heads=2", "mae.decoder_dim=16",
               "evaluation.finetune_epochs=3", "evaluation.val_per_class=2", "pretrain.batch_size=8"]
TINY_TEXT = ["backbone.num_layers=1", "backbone.hidden_dim=16", "backbone.intermediate_dim=32",
             "backbone.sequence_length=32", "tokenizer.vocabulary_size=120", "evaluation.finetune_epochs=3",
             "evaluation.val_per_class=2", "pretrain.batch_size=8"]


@pytest.fixture(autouse=True)
def vocabulary_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PRETRAIN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "shapes", per_class=14)


@pytest.fixture
def table(tmp_path):
    return write_labelled_csv(tmp_path / "labelled.csv", per_class=14)


def run_args(tmp_path):
    return ["--output", str(tmp_path / "run"), "--export-root", str(tmp_path / "saved_models")]


def test_help_and_recipe_list(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--help"])
    assert exit.value.code == 0
    assert "run" in capsys.readouterr().out
    assert cli.main(["recipes"]) == 0
    listing = capsys.readouterr().out
    for name in ("mae_fashion_mnist", "bert_wordnet", "mae_images", "bert_text", "mae_cifar10", "bert_imdb"):
        assert name in listing
    assert listing.count("\n") == len(recipe_descriptions())


def test_show_prints_the_whole_config_with_flags_and_sets_applied(capsys):
    assert cli.main(["show", "mae_images", "--data", "photos/", "--labels-per-class", "5", "--quick",
                     "--set", "pretrain.epochs=3", "encoder.depth=2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["data"]["labelled"] == "photos/" and shown["evaluation"]["labels_per_class"] == 5
    assert shown["pretrain"]["epochs"] == 3 and shown["encoder"]["depth"] == 2  # --set comes after --quick
    assert shown["smoke_run"] and shown["data"]["max_pretrain_examples"] == 4096
    assert set(shown) == {"name", "data", "encoder", "objective", "mae", "simmim", "latent", "pretrain", "evaluation",
                          "pooling", "export", "output_dir", "seed", "smoke_run", "quick"}


@pytest.mark.parametrize("arguments, budget", [
    (["mae_images", "--set", "pretrain.steps=300"], (None, 300, None)),  # the recipe's 10 minutes give way
    (["mae_fashion_mnist", "--budget-minutes", "5"], (5.0, None, None)),  # and so do its 40 epochs
    (["mae_images", "--pretrain-epochs", "3"], (None, None, 3)),
    (["mae_images", "--backend", keras.backend.backend(), "--verbose"], (10, None, None)),  # as run takes them
])
def test_the_budget_a_user_names_is_the_one_that_counts(capsys, arguments, budget):
    assert cli.main(["show", *arguments]) == 0
    pretrain = json.loads(capsys.readouterr().out)["pretrain"]
    assert (pretrain["budget_minutes"], pretrain["steps"], pretrain["epochs"]) == budget


@pytest.mark.parametrize("arguments, message", [
    (["run", "no_such_recipe"], "Unknown recipe 'no_such_recipe'. Available: bert_imdb, bert_text"),
    (["show", "mae_images", "--set", "pretrain.epoch=3"], "Unknown config key 'pretrain.epoch'.*Did you mean 'pretrain.epochs'"),
    (["show", "mae_images", "--set", "pretrain.batch_size=many"], "pretrain.batch_size must be an integer; got 'many'"),
    (["show", "mae_images", "--set", "pretrain.epochs"], "--set takes KEY=VALUE"),
    (["show", "mae_images", "--text-column", "body"], r"--text-column does not apply to mae_images"),
    (["run", "mae_images", "--labels-per-class", "0"], "labels per class must be at least 1"),
    # Model sizes are checked with the config, before any data is read, named by their keys.
    (["show", "mae_images", "--set", "encoder.patch_size=0"], r"encoder.patch_size must be at least 1; got 0\."),
    (["show", "mae_images", "--set", "encoder.hidden_dim=130"], r"encoder.hidden_dim 130 must be divisible by "
                                                                 r"encoder.num_heads 4\."),
    (["show", "mae_images", "--set", "mae.decoder_dim=18"], r"mae.decoder_dim 18 must be divisible by 4 \(a sine"),
    (["show", "mae_images", "--set", "simmim.mask_ratio=1.5"], r"simmim.mask_ratio must be strictly between 0 and 1"),
    (["show", "mae_images", "--set", "latent.predictor_depth=-1"], r"latent.predictor_depth must be at least 0"),
    (["show", "bert_text", "--set", "backbone.num_heads=0"], r"backbone.num_heads must be at least 1; got 0\."),
    (["show", "bert_text", "--set", "backbone.preset=bert_tiny_en_uncasedd"],
     r"backbone.preset 'bert_tiny_en_uncasedd' is neither .*; did you mean bert_tiny_en_"),
    (["show", "mae_images", "--seed", "-1"], r"seed must be a non-negative integer; got -1\."),
    (["show", "bert_text", "--set", "mlm.mask_rate=0"], r"mlm.mask_rate must be strictly between 0 and 1; got 0"),
])
def test_bad_arguments_are_one_line_errors(capsys, arguments, message):
    assert cli.main(arguments) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.strip().splitlines()) == 1
    assert re.search(message, error), error


def test_bad_backend_is_an_argparse_error():
    with pytest.raises(SystemExit) as exit:
        cli.main(["run", "mae_fashion_mnist", "--backend", "numpy"])
    assert exit.value.code == 2


def test_a_bad_keras_backend_variable_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    assert cli.main(["show", "mae_images"]) == 2
    assert capsys.readouterr().err == "error: KERAS_BACKEND='numpy' is not one of tensorflow, jax, torch.\n"


@pytest.mark.slow
def test_run_on_a_folder_of_images_writes_results_plots_and_a_verified_export(capsys, tmp_path, folder):
    code = cli.main(["run", "mae_images", "--data", str(folder), "--quick", "--labels-per-class", "2",
                     *run_args(tmp_path), "--set", *TINY_IMAGES])
    assert code == 0
    out = capsys.readouterr().out
    assert "4 test images (held out of the labelled images, stratified; not pre-trained on)" in out
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["recipe"] == "mae_images" and written["backend"] == keras.backend.backend()
    # Every size follows from the data (20x20 and 37x23 images, grey and RGB), and the run says so.
    assert written["data"]["pretraining_images"] == 20 and written["data"]["image_shape"] == [20, 20, 3]
    assert "images resized to 20x20 (data.image_size: from the smallest side, at most 64); 3 channels (data.channels: " \
           "some images have colour); patches of 5 pixels, a 4x4 grid (encoder.patch_size)" in out
    assert "2 steps of 8 images = 1 epoch of 2 steps (pretrain.epochs)" in out
    assert written["config"]["encoder"]["patch_size"] == 5 and written["pretrain_steps"] == 2  # quick: 20 images / 8, one epoch
    assert 0 < written["pretrain_mfu"] < 1 and written["peak_flops"] > 1e9
    assert list((tmp_path / "run" / "logs" / "train").glob("events.out.tfevents.*"))  # TensorBoard
    assert written["baseline_accuracy"] >= 0.75  # the classes are bands at different rows
    assert written["export_path"] == str(tmp_path / "saved_models" / "mae_images" / "1")
    assert written["export_max_abs_diff"] <= 1e-5
    assert (tmp_path / "saved_models" / "mae_images" / "1" / "saved_model.pb").is_file()
    for name in ("pretrain_loss.png", "reconstructions.png", "accuracies.png"):
        assert (tmp_path / "run" / name).read_bytes()[:4] == b"\x89PNG"
    encoder = keras.saving.load_model(written["encoder_path"])  # the pre-trained encoder, reusable
    assert encoder.hidden_dim == 16 and encoder.channels == 3


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Asked for a vocabulary")
def test_run_on_a_csv_and_text_files_writes_results_and_a_string_export(capsys, tmp_path, table):
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("the team scored a goal in the match\nflour and sugar bake in the oven\n")
    code = cli.main(["run", "bert_text", "--data", str(table), "--unlabeled", str(books), "--quick",
                     "--labels-per-class", "2", *run_args(tmp_path), "--set", *TINY_TEXT])
    assert code == 0
    out = capsys.readouterr().out
    assert "4 test texts (held out of the labelled texts, stratified; not pre-trained on)" in out
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["data"]["unlabeled"][0].startswith("files [") and "a.txt" in written["data"]["unlabeled"][0]
    assert written["baseline_accuracy"] >= 0.75 and 0.0 <= written["masked_token_accuracy"] <= 1.0
    assert written["export_path"] == str(tmp_path / "saved_models" / "bert_text" / "1")
    assert written["export_max_abs_diff"] <= 1e-5
    assert (tmp_path / "run" / "preset" / "tokenizer.json").is_file()


@pytest.mark.parametrize("case, message", [
    ("empty folder", "No images found"),
    ("one class", "needs at least two classes; the labelled data has only class 'circle'"),
    ("undecodable image", "bad.png cannot be decoded as an image"),
    ("more labels than a class has", "Class 'circle' has 14 labelled examples, fewer than the 20 training labels"),
    ("output is a file", "is a file: pass another --output"),
    ("output under a file", "cannot be made: "),
    ("output not writable", "is not writable"),
    ("export root is a file", "The export directory {root}/mae_images cannot be made: {root} is a file. Pass another "
                              "--export-root."),
    ("batch larger than the data", "pre-training images make no batch of 500: lower pretrain.batch_size"),
])
def test_bad_image_inputs_fail_clearly_and_write_nothing(capsys, monkeypatch, tmp_path, folder, case, message):
    data, extra = folder, []
    if case == "empty folder":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "one class":
        data = write_image_folder(tmp_path / "one", per_class=14, classes=("circle",))
    elif case == "undecodable image":
        (folder / "square" / "bad.png").write_bytes(b"not an image")
    elif case == "more labels than a class has":
        extra = ["--labels-per-class", "20"]
    elif case == "output is a file":
        (tmp_path / "run").write_text("")
    elif case == "output under a file":
        (tmp_path / "run").write_text("")
        extra = ["--output", str(tmp_path / "run" / "inner")]
    elif case == "output not writable":  # as root, permissions cannot make a directory unwritable
        monkeypatch.setattr("os.access", lambda path, mode: False)
    elif case == "export root is a file":  # found before the run, not after its training
        (tmp_path / "saved_models").write_text("")
    sets = TINY_IMAGES + (["pretrain.batch_size=500"] if case == "batch larger than the data" else [])
    code = cli.main(["run", "mae_images", "--data", str(data), "--quick", *run_args(tmp_path), *extra, "--set", *sets])
    error = capsys.readouterr().err
    message = message.format(root=tmp_path / "saved_models")
    assert code == 1 and message in error and len(error.strip().splitlines()) == 1, error
    assert case == "export root is a file" or not (tmp_path / "saved_models").exists()
    assert case in ("output is a file", "output under a file") or not (tmp_path / "run").exists()


@pytest.mark.parametrize("case, message", [
    ("missing columns", "has no column 'body'"),
    ("one class", "needs at least two classes"),
    ("glob matching nothing", "matches no files"),
    ("batch larger than the data", "The pre-training text makes no batch of 500 sequences"),
    ("sequence too short for the special tokens", "backbone.sequence_length 4 is too small: [CLS], [SEP] and the text need at least 8"),
])
def test_bad_text_inputs_fail_clearly_and_write_nothing(capsys, tmp_path, table, case, message):
    extra = []
    if case == "missing columns":
        extra = ["--text-column", "body"]
    elif case == "one class":
        table.write_text("text,label\n" + "".join(f"some text {i},only\n" for i in range(30)))
    elif case == "glob matching nothing":
        extra = ["--unlabeled", str(tmp_path / "nothing" / "*.txt")]
    # (a vocabulary the tiny table supports: no warning line before the error)
    sets = TINY_TEXT + {"batch larger than the data": ["pretrain.batch_size=500", "tokenizer.vocabulary_size=70"],
                        "sequence too short for the special tokens": ["backbone.sequence_length=4"]}.get(case, [])
    code = cli.main(["run", "bert_text", "--data", str(table), "--quick", "--labels-per-class", "2", *extra,
                     *run_args(tmp_path), "--set", *sets])
    error = capsys.readouterr().err
    assert code == 1 and message in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "saved_models").exists() and not (tmp_path / "run").exists()


MY_RECIPE = '''
"""A user's recipe: the image pipeline on their folder, smaller."""
import keras
from keras_pretrain.pipelines import ImageDataConfig, ImagePipelineConfig, ViTConfig, MaeConfig
from keras_pretrain.evaluation import EvaluationConfig
from keras_pretrain.pipelines.base import ExportConfig, PretrainConfig

print("building on", keras.backend.backend())
recipe = ImagePipelineConfig(
    name="my_recipe",
    data=ImageDataConfig(labelled={folder!r}, image_size=20),
    encoder=ViTConfig(patch_size=5, hidden_dim=16, depth=1, num_heads=2),
    mae=MaeConfig(decoder_dim=16),
    pretrain=PretrainConfig(epochs=1, batch_size=8),
    evaluation=EvaluationConfig(labels_per_class=2, val_per_class=2, finetune_epochs=2,
                                finetune_grid=[(1e-3, 0.75)], scratch_grid=[(1e-3, None)]),
    export=ExportConfig(enabled=False),
)
'''


@pytest.mark.slow
def test_user_recipe_file_runs_on_the_backend_the_flag_names(tmp_path, folder):
    # A fresh process: the flag must choose the backend before keras is imported.
    (tmp_path / "my_recipe.py").write_text(MY_RECIPE.format(folder=str(folder)))
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    code = textwrap.dedent(f"""
        import sys
        from keras_pretrain.cli import main
        sys.exit(main(["run", {str(tmp_path / 'my_recipe.py')!r}, "--backend", {other!r},
                       "--output", {str(tmp_path / 'out')!r}]))
    """)
    result = run_python(code, backend="tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"building on {other}" in result.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["recipe"] == "my_recipe" and results["backend"] == other
    assert results["data"]["image_shape"] == [20, 20, 3]


def test_recipe_file_must_define_one_recipe(tmp_path):
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="must define exactly one recipe .* found 0"):
        load_recipe(tmp_path / "empty.py")
    (tmp_path / "two.py").write_text("from keras_pretrain.pipelines import ImagePipelineConfig as C\na = C()\nb = C()\n")
    with pytest.raises(ValueError, match="found 2: a, b"):
        load_recipe(str(tmp_path / "two.py"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.py"))


@pytest.mark.parametrize("code, message", [
    ("x = 1\nraise RuntimeError('boom')\n", "line 2: RuntimeError: boom"),
    ("x = (\n", "line 1: SyntaxError: '\\(' was never closed"),
    ("from keras_pretrain.pipelines import ImagePipelineConfig\nc = ImagePipelineConfig(seed=-1)\n",
     "line 2: ConfigError: seed must be a non-negative integer; got -1."),
])
def test_a_recipe_file_that_fails_says_where_in_one_line(tmp_path, monkeypatch, capsys, code, message):
    (tmp_path / "mine.py").write_text(code)
    monkeypatch.chdir(tmp_path)  # a relative path, as a user types it
    assert cli.main(["show", "mine.py"]) == 1
    error = capsys.readouterr().err
    assert re.search(f"^error: Recipe file mine.py, {message}$", error.strip()), error


def test_bench_leaves_the_cards_memory_to_the_processes_it_starts(monkeypatch):
    for name in ("XLA_PYTHON_CLIENT_PREALLOCATE", "TF_FORCE_GPU_ALLOW_GROWTH"):
        monkeypatch.setenv(name, "unset below; restored after the test")
        monkeypatch.delenv(name)
    seen = []
    monkeypatch.setattr(bench, "run_bench", lambda *args, **kwargs: seen.append(
        (os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"), os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"))) or [])
    assert cli.main(["bench", "--backends", "jax", "--no-real-data"]) == 0
    assert seen == [("false", "true")]  # JAX in this process would otherwise take most of a GPU's memory
