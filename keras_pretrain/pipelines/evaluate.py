"""`keras-pretrain evaluate`: the few-label protocols on saved encoders, side by side, on any labelled data.

An encoder is a `.keras` file holding a `ViTEncoder` (the `encoder.keras` an
image run writes) or a keras-hub preset directory with a backbone and its
tokenizer (the `preset/` a text run writes). Each is probed, classified by
k nearest neighbours and (unless `finetune=False`) fine-tuned on the same
labels; one label-efficiency curve compares them all with a randomly
initialised encoder of the same size and the simple baseline.

Example:
>>> results = evaluate_encoders(["runs/mae/encoder.keras", "runs/latent/encoder.keras"], "fashion_mnist",
...                             test="fashion_mnist:test", overrides={"evaluation.labels_per_class": 10})
>>> results["encoders"]["runs/mae/encoder.keras"]["knn_accuracy"]
"""

import json
from pathlib import Path

import keras_hub

from keras_pretrain.checkpoints import load_keras_file
from keras_pretrain.pipelines.base import check_writable
from keras_pretrain.config import override, to_dict
from keras_pretrain.evaluation import FewLabelEvaluation
from keras_pretrain.pipelines.images import ImageDataConfig, ImagePipeline, ImagePipelineConfig
from keras_pretrain.pipelines.text import BertConfig, TextDataConfig, TextPipeline, TextPipelineConfig


def load_encoder(path):
    """`("image", ViTEncoder)` from a `.keras` file or `("text", (backbone, tokenizer))` from a preset directory."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a keras-hub preset (no config.json): pass a text run's preset/.")
        return "text", (keras_hub.models.Backbone.from_preset(str(path)), keras_hub.tokenizers.Tokenizer.from_preset(str(path)))
    if not path.is_file():
        raise FileNotFoundError(f"Encoder {path} does not exist: pass an encoder.keras file or a preset directory.")
    encoder = load_keras_file(path, "pass an image run's encoder.keras or a text run's preset/.")
    if not hasattr(encoder, "embed_patches"):
        raise ValueError(f"{path} holds {type(encoder).__name__}, not ViTEncoder: pass an image run's encoder.keras.")
    return "image", encoder


def evaluate_encoders(paths, labelled, test=None, overrides=(), output_dir=None, finetune=True, log=print):
    """Run the few-label protocols on each saved encoder and one label-efficiency curve over all; return the results.

    `labelled` and `test` are data sources as the pipelines take them;
    `overrides` are `"key=value"` strings or a dict applied to the pipeline
    config (`evaluation.*`, `data.*`). With `output_dir`, writes
    `results.json` and `label_curve.png` there.
    """
    if output_dir is not None:
        check_writable(output_dir)
    loaded = {str(path): load_encoder(path) for path in paths}
    kinds = {kind for kind, _ in loaded.values()}
    if len(kinds) != 1:
        raise ValueError("Evaluate image encoders and text encoders in separate runs.")
    kind = kinds.pop()
    if kind == "image":
        first = next(iter(loaded.values()))[1]
        shapes = {(e.image_size, e.channels) for _, e in loaded.values()}
        if len(shapes) > 1:
            raise ValueError(f"The encoders take different images {sorted(shapes)}: evaluate them separately.")
        images = ImageDataConfig(labelled=labelled, test=test, image_size=first.image_size, channels=first.channels)
        config = override(ImagePipelineConfig(name="evaluate", data=images), overrides)
        pipeline = ImagePipeline(config, verbose=int(log is print))
        data = pipeline.load_data()
        encoders = {name: encoder for name, (_, encoder) in loaded.items()}
    else:
        backbone, tokenizer = next(iter(loaded.values()))[1]
        backbone_config = BertConfig(preset=str(next(iter(loaded))), sequence_length=min(128, backbone.max_sequence_length))
        config = override(TextPipelineConfig(name="evaluate", data=TextDataConfig(labelled=labelled, test=test),
                                             backbone=backbone_config), overrides)
        pipeline = TextPipeline(config, verbose=int(log is print))
        data = pipeline.load_data(tokenizer=tokenizer)
        encoders = {name: encoder[0] for name, (_, encoder) in loaded.items()}
    evaluation = FewLabelEvaluation(pipeline.task(data), data.splits, config.evaluation, log=log, seed=config.seed)
    results = {}
    curve_config = config.evaluation
    evaluation.config = override(config.evaluation, {"curve_labels_per_class": []})  # one curve below, for all
    for name, encoder in encoders.items():
        log(f"\n== {name}")
        results[name] = evaluation.run(encoder, title=f"{name}, {config.evaluation.labels_per_class} labels per class",
                                       finetune=finetune).results
    evaluation.config = curve_config
    curve = evaluation.label_curve({**encoders, "random init": None})
    summary = {"data": data.description, "encoders": results, "label_curve": curve, "config": to_dict(config)}
    if output_dir is not None:
        from keras_pretrain import plots

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if curve:
            plots.plot_label_curve(curve, output_dir / "label_curve.png", title=f"{labelled}: label efficiency")
        (output_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
