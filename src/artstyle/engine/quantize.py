"""int8 static quantisation of an exported model, with ONNX Runtime's own tools.

``quantize_model`` turns ``model.onnx`` (fp32, with its card) into ``model.int8.onnx`` and
``model.int8.json``: ONNX Runtime's ``quant_pre_process`` (shape inference and graph
optimisation), then ``quantize_static`` in QDQ format with per-channel int8 weights, calibrated
on real images preprocessed exactly as the predictor preprocesses them. Nothing is hand-rolled
here: this module only chooses the images, the calibration method and which nodes stay fp32.

The defaults were chosen by measurement on the shipped model (bench/bench_quantize.py, whose
results are to be re-run): keeping the stem and head in fp32 cut the mean probability difference
to fp32 at no loss of speed; MinMax did as well as entropy and percentile calibration at a third
of the calibration time. Weights are 7-bit wherever ONNX Runtime multiplies them in a GEMM, so
that CPUs without VNNI cannot saturate their 16-bit pair sums (``QuantSettings.reduce_range``;
bench/bench_int8_weights.py measures its cost).

Which nodes stay fp32, and why:
  - the stem convolution: it sees the raw normalised pixels, whose range int8 represents worst;
    and what feeds it, a pixel-input export's normalisation (quantised, it rounded the pixels and
    made the model slower);
  - everything downstream of a spatial reduction (global pooling, per-channel mean/std
    "style statistics", the classifier Gemm/MatMul, Softmax): a few thousand multiply-adds
    on vectors, so int8 gains nothing there while its rounding lands straight on the logits;
  - any op outside the convolutional trunk (TRUNK_OPS), e.g. the x * x of a variance.

For a probe run (a frozen backbone and a fitted linear head, e.g. the shipped default model)
the head is then refitted to the int8 trunk (``refit_head``): on the features the int8 trunk
produces for the run's training split and augmented views, to the fp32 model's answers for the
same views (soft targets), with the run's C and source balancing, and written into the int8
graph's head. int8 rounding shifts the features the head reads; the refitted head takes back
what it can of that shift, so that the int8 model gives fp32's answers.

The export then measures the int8 model against the fp32 one on held-out images that
calibration never saw (top-1 agreement, largest probability difference, accuracy on labelled
images) and records it in the card under ``quantization``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ArtstyleError, ImageLoadError
from ..images import is_image_file
from ..infer.predictor import create_session, int8_path, read_model_bytes, takes_pixels
from ..preprocess import load_pixels, model_input, pixels_from_normalized

log = logging.getLogger("artstyle")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_CALIBRATION_SIZE = 500
DEFAULT_HOLDOUT_SIZE = 500
DEFAULT_MIN_AGREEMENT = 0.98
# The rule for running int8 by default in place of fp32: as accurate (at most 0.3 points lower
# on held-out labelled images) and the same answers (top-1 agreement) on at least 99.5 % of them.
AS_DEFAULT_MIN_AGREEMENT = 0.995
AS_DEFAULT_MAX_ACCURACY_LOSS = 0.003
CALIBRATION_BATCH = 16
SEED = 0
# Ops that reduce a feature map to a vector: what follows them is the head (fp32, see above).
REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceMax", "ReduceL2",
              "GlobalAveragePool", "GlobalMaxPool")
# The convolutional trunk's op types, the only ones quantised: an elementwise Mul/Pow/Sqrt/Div
# (x * x for a variance, say) is cheap in fp32 and squares would waste int8's range.
TRUNK_OPS = ("Conv", "Add", "Clip", "Relu", "MaxPool", "AveragePool", "Concat", "Resize")


# ----------------------------------------------------------------------------- images


@dataclass
class ImageSet:
    """Labelled (or not) image files and where they came from, for the card."""

    files: list[Path]
    labels: list[str | None] = field(default_factory=list)
    source: str = ""

    def sample(self, count: int, seed: int = SEED) -> "ImageSet":
        """``count`` of them at random (a fixed seed: the same export gives the same model)."""
        if len(self.files) <= count:
            return self
        keep = sorted(np.random.default_rng(seed).choice(len(self.files), count, replace=False))
        return ImageSet([self.files[i] for i in keep], [self.labels[i] for i in keep], self.source)


def from_frame(frame, source: str) -> ImageSet:
    return ImageSet([Path(p) for p in frame["path"]], [str(v) for v in frame["label"]], source)


def run_split_dir(weights: Path) -> Path | None:
    """The split a run saved (RUN/data/train.csv ...), for weights at RUN/weights/best.safetensors."""
    from .data import is_split_dir

    run = weights.parent.parent if weights.parent.name == "weights" else weights.parent
    return run / "data" if is_split_dir(run / "data") else None


def images_from(data: str | os.PathLike) -> dict[str, ImageSet]:
    """A split dir (train/val/test CSVs), a manifest CSV or a folder of images -> named sets.
    Raises ``ArtstyleError`` (one line) when it holds no image."""
    from .data import is_split_dir, read_split_dir

    path = Path(data)
    if not path.exists():
        raise ArtstyleError(f"{path}: calibration data not found")
    try:
        if is_split_dir(path):
            return {name: from_frame(frame, f"{path} ({name} split)") for name, frame in read_split_dir(path).items()}
        if path.is_file() and path.suffix.lower() == ".csv":
            from ..data import read_manifest

            manifest = read_manifest(path)
            return {"all": from_frame(manifest[manifest["valid"]], str(path))}
    except (KeyError, ValueError) as exc:
        raise ArtstyleError(f"{path}: not a split folder or manifest CSV ({exc})") from None
    if path.is_dir():
        from ..infer.sources import images_in_folder

        files = [Path(f) for f in images_in_folder(str(path))]
        # A folder per class gives labels for the accuracy check; loose images have none.
        labels = [f.parent.name if f.parent != path else None for f in files]
        return {"all": ImageSet(files, labels, str(path))}
    if path.is_file() and is_image_file(path):
        return {"all": ImageSet([path], [None], str(path))}
    raise ArtstyleError(f"{path}: not a folder of images, a split folder or a manifest CSV")


def first_with_files(sets: dict[str, ImageSet], names) -> ImageSet | None:
    return next((sets[n] for n in names if n in sets and sets[n].files), None)


def choose_images(weights: Path, calibration, holdout, calibration_size: int,
                  holdout_size: int) -> tuple[ImageSet, ImageSet]:
    """(calibration images, held-out images for the parity check), never overlapping.

    Calibration: ``calibration`` if given, else the run's training split. Held out: ``holdout``
    if given, else the test split (else validation) of the calibration split dir or the run;
    failing both, the calibration pool's images that calibration did not use."""
    run_split = run_split_dir(weights)
    if not calibration and not run_split:
        raise ArtstyleError(
            f"{weights}: no training split beside this checkpoint (RUN/data/train.csv); "
            f"pass --calibration with a folder of images like the ones the model will see"
        )
    calib_sets = images_from(calibration or run_split)
    pool = first_with_files(calib_sets, ("train", "all"))
    if pool is None:
        raise ArtstyleError(f"{calibration or run_split}: no images found for calibration")
    calib = pool.sample(calibration_size)

    if holdout:
        held = first_with_files(images_from(holdout), ("test", "val", "all"))
    else:
        splits = calib_sets if "train" in calib_sets else images_from(run_split) if run_split else {}
        held = first_with_files(splits, ("test", "val"))
    if held is None and not holdout:  # no split anywhere: hold out what calibration did not take
        held = ImageSet(pool.files, pool.labels, f"{pool.source} (not used for calibration)")
    taken = set(calib.files)
    keep = [(f, lab) for f, lab in zip(held.files, held.labels) if f not in taken] if held else []
    if not keep:
        raise ArtstyleError(f"{holdout or pool.source}: no held-out images left for the int8 parity check")
    held = ImageSet([f for f, _ in keep], [lab for _, lab in keep], held.source)
    return calib, held.sample(holdout_size)


def preprocess_files(images: ImageSet, card: dict) -> tuple[np.ndarray, ImageSet]:
    """Decode and preprocess as the predictor does (draft-size JPEG decode included) into the
    model's input. Unreadable files are skipped with a warning; returns (inputs, the files kept)."""
    size, crop = int(card["image_size"]), float(card.get("crop_pct", 1.0))
    pixel_input = card["input"].get("dtype") == "uint8"
    arrays, files, labels = [], [], []
    for path, label in zip(images.files, images.labels):
        try:
            arrays.append(model_input(load_pixels(path, size, crop), card["mean"], card["std"], pixel_input))
        except ImageLoadError as exc:
            log.warning(f"int8 export skips {exc}")
            continue
        files.append(path)
        labels.append(label)
    if not arrays:
        raise ArtstyleError(f"{images.source}: none of its {len(images.files)} images could be read")
    return np.stack(arrays), ImageSet(files, labels, images.source)


# ----------------------------------------------------------------------------- quantisation


def calibration_reader(input_name: str, batch: np.ndarray):
    """ONNX Runtime's CalibrationDataReader over preprocessed arrays, a few images per call.
    Every call has the same number of images: the histogram calibrators (entropy, percentile)
    stack the batches and fail on a shorter last one, so the remainder is left out."""
    from onnxruntime.quantization import CalibrationDataReader

    if len(batch) > CALIBRATION_BATCH:
        batch = batch[:len(batch) - len(batch) % CALIBRATION_BATCH]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.start = 0

        def get_next(self):
            if self.start >= len(batch):
                return None
            chunk = batch[self.start:self.start + CALIBRATION_BATCH]
            self.start += CALIBRATION_BATCH
            return {input_name: chunk}

        def rewind(self):
            self.start = 0

    return Reader()


def fp32_nodes(model_path: Path, *, stem: bool = True, head: bool = True, layers: tuple[str, ...] = ()) -> list[str]:
    """Names of the nodes to keep in fp32: the stem conv (the first Conv of the graph, whose
    nodes are in topological order) and what feeds it (a pixel-input export's normalisation:
    quantising x * scale + bias would round the pixels the stem sees and cost more than it
    saves), the head (every node downstream of a spatial reduction), and the convolutions whose
    weights' names start with one of ``layers`` (e.g. ``model.backbone.blocks.0.``)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    names = [n.name for n in graph.node if n.op_type == "Conv" and layers and n.input[1].startswith(layers)]
    if stem:
        first_conv = next((n for n in graph.node if n.op_type == "Conv"), None)
        names += [first_conv.name] + upstream_of(graph, first_conv) if first_conv is not None else []
    if head:
        consumers: dict[str, list] = {}
        for node in graph.node:
            for tensor in node.input:
                consumers.setdefault(tensor, []).append(node)
        frontier = [n for n in graph.node if n.op_type in REDUCTIONS]
        seen = set()
        while frontier:
            node = frontier.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            for tensor in node.output:
                frontier += consumers.get(tensor, [])
        names += [n.name for n in graph.node if n.name in seen]
    return names


def depthwise_weights(model_path: Path) -> list[str]:
    """The weights of the depthwise convolutions: one input and one output channel per group,
    the only convolutions ONNX Runtime runs with its depthwise kernel rather than a GEMM."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    return [node.input[1] for node in graph.node if node.op_type == "Conv"
            and shapes.get(node.input[1], (0, 0))[1:2] == (1,)
            and shapes[node.input[1]][0] == next((a.i for a in node.attribute if a.name == "group"), 1)]


def upstream_of(graph, node) -> list[str]:
    """Names of the nodes whose outputs reach ``node``, in graph order."""
    producers = {tensor: n for n in graph.node for tensor in n.output}
    seen, frontier = set(), list(node.input)
    while frontier:
        producer = producers.get(frontier.pop())
        if producer is not None and producer.name not in seen:
            seen.add(producer.name)
            frontier += list(producer.input)
    return [n.name for n in graph.node if n.name in seen]


@dataclass
class QuantSettings:
    method: str = DEFAULT_METHOD
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    keep_stem: bool = True
    keep_head: bool = True
    # Weight-name prefixes of further layers to keep in fp32 (for the default model, the first
    # and last blocks: bench/bench_int8_weights.py, docs/model.md).
    keep_layers: tuple[str, ...] = ()
    percentile: float = 99.999
    # 7-bit weights where they meet a matrix product: without VNNI, x86 int8 GEMM kernels add
    # pairs of u8 x s8 products in 16-bit registers (pmaddubsw), which saturate unless
    # |weight| <= 64 (255 * 64 * 2 < 2**15). With them, every x86-64 CPU computes the same
    # answers; with 8-bit weights, only VNNI ones did. Depthwise convolutions keep 8-bit weights:
    # their kernels widen both operands to 16 bits and sum in 32 (MlasConvDepthwise), which
    # cannot saturate, and 7 bits there cost accuracy for nothing.
    reduce_range: bool = True

    def describe(self) -> dict:
        weights = ("int8 per channel: 7-bit [-64, 64] in matrix-product convolutions, 8-bit in depthwise ones"
                   if self.reduce_range else "int8, per channel")
        return {"format": "QDQ", "weights": weights, "reduce_range": self.reduce_range,
                "activations": "uint8, per tensor",
                "calibration_method": self.method, "keep_fp32": [n for n, on in
                (("stem", self.keep_stem), ("head", self.keep_head)) if on] + list(self.keep_layers)}


def quantize_file(fp32_path: Path, output: Path, calib: np.ndarray, input_name: str,
                  settings: QuantSettings) -> list[str]:
    """ONNX Runtime's pre-processing then static QDQ quantisation; returns the fp32 node names."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if settings.method not in CALIBRATION_METHODS:
        raise ArtstyleError(f"unknown calibration method {settings.method!r} (choose from {', '.join(CALIBRATION_METHODS)})")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings.method]
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".quant.") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        keep = fp32_nodes(prepared, stem=settings.keep_stem, head=settings.keep_head, layers=settings.keep_layers)
        eight_bit = depthwise_weights(prepared) if settings.reduce_range else []
        quantize_static(
            str(prepared), str(output), calibration_reader(input_name, calib),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=method, nodes_to_exclude=keep, op_types_to_quantize=list(TRUNK_OPS),
            extra_options={"CalibPercentile": settings.percentile,
                           # Histograms of every activation otherwise stay in memory at once.
                           "CalibMaxIntermediateOutputs": 8,
                           "TensorQuantOverrides": {w: [{"reduce_range": False, "axis": 0}] for w in eight_bit}},
        )
    return keep


# ----------------------------------------------------------------------------- the head, refitted


def feature_tensor(graph, classifier: str = "model.classifier") -> str:
    """The name of the tensor the linear head reads: the standardisation's input for a style
    head, else the input of the layer whose weight is ``classifier``.weight (a pooled embedding)."""
    for node in graph.node:
        if node.op_type == "Sub" and any(i.endswith("feature_mean") for i in node.input):
            return next(i for i in node.input if not i.endswith("feature_mean"))
    # The head's first linear layer: the classifier itself, or the first of an MLP head's Sequential.
    first_weights = {f"{classifier}.weight", f"{classifier}.0.weight"}
    for node in graph.node:
        if node.op_type in ("Gemm", "MatMul") and first_weights & set(node.input):
            return node.input[0]
    raise ArtstyleError(f"cannot find the linear head in the model graph (no {classifier}.weight); "
                        f"use --no-head-refit")


def feature_session(model_path: Path, classifier: str = "model.classifier"):
    """ONNX Runtime session on ``model_path`` whose outputs are (probabilities, head input)."""
    import onnx

    model = onnx.load(str(model_path))
    features = feature_tensor(model.graph, classifier)
    model.graph.output.append(onnx.helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
    return create_session(model.SerializeToString(), model_path, None)


def view_batches(session, frame, spec, augment, workers: int) -> Iterator[np.ndarray]:
    """The graph's input for every row of ``frame``, a batch at a time: the augmented views
    exactly as the probe computed them for fp32. An image that can no longer be read (moved since
    training, say) raises ``ArtstyleError`` in one line."""
    from .data import build_loader, default_workers
    from .probe import ViewDataset

    loader = build_loader(ViewDataset(frame, spec, augment), batch_size=CALIBRATION_BATCH * 2, train=False,
                          workers=default_workers(workers, "cpu"), seed=0)
    pixels = takes_pixels(session)
    try:
        for images, _ in loader:
            # The loader yields what PyTorch reads; a pixel-input graph gets the same pixels back.
            yield pixels_from_normalized(images.numpy(), spec.mean, spec.std) if pixels else images.numpy()
    except (ImageLoadError, RuntimeError) as exc:  # a loader worker re-raises a file's error as RuntimeError
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ArtstyleError(f"cannot read the run's training images for the int8 head refit ({reason}); "
                            f"restore them or export with --no-head-refit") from None


def trunk_features(session, frame, spec, augment, workers: int) -> np.ndarray:
    """The head's input for every row of ``frame`` (augmented views included), from a
    ``feature_session`` of the quantised graph."""
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x})[1] for x in view_batches(session, frame, spec, augment, workers)])


def features_and_teacher(session, teacher, frame, spec, augment, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """``trunk_features`` and, for the very same views, the probabilities of ``teacher`` (the
    fp32 model's session)."""
    name, features, probabilities = session.get_inputs()[0].name, [], []
    for x in view_batches(session, frame, spec, augment, workers):
        features.append(session.run(None, {name: x})[1])
        probabilities.append(teacher.run(None, {name: x})[0])
    return np.concatenate(features), np.concatenate(probabilities)


def probe_config(meta: dict, source: str = ""):
    """The run's TrainConfig when it was a probe run (frozen backbone, fitted head), else None."""
    from ..config import TrainConfig

    config = meta.get("config") or {}
    return TrainConfig.from_dict(config, source) if config.get("mode") == "probe" else None


def head_parameter_names(model) -> tuple[str, set[str]]:
    """(the classifier's name, the head's parameter names) as the ONNX graph spells them: the
    PyTorch names under ProbabilityModel's ``model.``."""
    name = next((n for n, m in model.named_modules() if m is model.get_classifier()), None)
    if name is None:
        raise ArtstyleError("cannot find the model's classifier layer for the int8 head refit; use --no-head-refit")
    state = {f"model.{k}" for k in model.state_dict()}
    # Every parameter of the classifier: a linear layer's weight and bias, or each layer of an MLP head.
    return f"model.{name}", {k for k in state if k.startswith(f"model.{name}.")} | (
        state & {"model.feature_mean", "model.feature_std"})


def write_head_into_graph(int8_model: Path, model, names: set[str]) -> None:
    """Replace the int8 graph's head initializers with ``model``'s; every one must be there, with
    the same shape (a renamed or folded head would otherwise leave stale parameters beside new ones)."""
    import onnx
    from onnx import numpy_helper

    state = {f"model.{k}": v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    graph = onnx.load(str(int8_model))
    found = set()
    for init in graph.graph.initializer:
        if init.name in names:
            if tuple(init.dims) != state[init.name].shape:
                raise ArtstyleError(f"{int8_model}: {init.name} is {tuple(init.dims)} in the graph but "
                                    f"{state[init.name].shape} in the refitted head; use --no-head-refit")
            init.CopyFrom(numpy_helper.from_array(state[init.name], init.name))
            found.add(init.name)
    if found != names:
        raise ArtstyleError(f"{int8_model}: the head's {', '.join(sorted(names - found))} not found in the int8 graph; "
                            f"use --no-head-refit")
    onnx.save(graph, str(int8_model))


def refit_head(int8_model: Path, fp32_model: Path, weights: Path, split_dir: Path | None,
               temperature: float) -> dict | None:
    """Refit a probe run's head (linear or MLP) on the int8 trunk's own features of the run's training
    split (and its augmented views) so that it gives the fp32 model's answers, and write it into
    the int8 graph. The targets are the fp32 model's probabilities for the same views (before
    its ``temperature``, which the graph applies after the head); the run's C (or an MLP head's
    width and its early stopping on held-out sources) and source balancing are kept. Returns what
    the card records; None (nothing changed) for a fine-tuned run or a run that kept no split."""
    from ..data.manifest import class_index
    from .checkpoint import load_model
    from .data import read_split_dir
    from .probe import fit_soft_head, fit_soft_mlp_head, groups_of, probe_parts, sample_weights, write_head
    from .transforms import create_view_augmentation

    model, spec, meta = load_model(weights)
    cfg = probe_config(meta, str(weights))
    if cfg is None:
        return None
    if split_dir is None:
        log.warning(f"{weights}: no split saved beside this probe run (RUN/data/train.csv); "
                    f"the int8 model keeps the head fitted on fp32 features")
        return None
    tick = time.perf_counter()
    classifier, names = head_parameter_names(model)
    parts = probe_parts(read_split_dir(split_dir), cfg)
    session, augment = feature_session(int8_model, classifier), create_view_augmentation(cfg)
    teacher = create_session(read_model_bytes(fp32_model), fp32_model, None)
    features, targets = {}, {}
    for name, frame in parts.items():
        features[name], fp32_probs = features_and_teacher(session, teacher, frame, spec, augment, cfg.workers)
        targets[name] = untempered(fp32_probs, temperature)
    row_weights = sample_weights(parts["train"], cfg.balance)
    if cfg.probe_head == "mlp":
        c = None
        head = fit_soft_mlp_head(features["train"], targets["train"], row_weights, groups_of(parts["train"]),
                                 hidden=cfg.model_hidden, seed=cfg.seed)
    else:
        c = meta["metrics"]["C"]
        head = fit_soft_head(features["train"], targets["train"], c, row_weights)
    write_head(model, head)
    write_head_into_graph(int8_model, model, names)
    log.info(f"head refitted on the int8 trunk's features in {time.perf_counter() - tick:.0f}s")
    val = head.predict_proba(features["val"])
    truth = parts["val"]["label"].map(class_index(spec.classes)).to_numpy()
    return {"refit_on_int8_features": True, "target": "the fp32 model's probabilities",
            "train_rows": int(len(parts["train"])), "rows_per_image": cfg.probe_views + 1,
            "head": cfg.probe_head, "C": c,
            "balance": cfg.balance, "val_acc": round(float((val.argmax(1) == truth).mean()), 4),
            "val_agreement": round(float((val.argmax(1) == targets["val"].argmax(1)).mean()), 4),
            "split": str(split_dir)}


def untempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z / T) -> softmax(z): the distribution of the head's own logits z."""
    from scipy.special import softmax

    return softmax(temperature * np.log(np.clip(probabilities, 1e-30, None)), axis=1)


def agreement(fp32: np.ndarray, int8: np.ndarray, labels: list[str | None], classes: list[str]) -> dict:
    """How the int8 model's answers differ from the fp32 model's on the same arrays."""
    result = {
        "holdout_images": int(len(fp32)),
        "top1_agreement": round(float((fp32.argmax(1) == int8.argmax(1)).mean()), 4),
        "max_prob_diff": round(float(np.abs(fp32 - int8).max()), 4),
        "mean_prob_diff": round(float(np.abs(fp32 - int8).mean()), 5),
    }
    known = [i for i, lab in enumerate(labels) if lab in classes]
    if known:
        truth = np.array([classes.index(labels[i]) for i in known])
        result["labelled_images"] = len(known)
        result["accuracy_fp32"] = round(float((fp32[known].argmax(1) == truth).mean()), 4)
        result["accuracy_int8"] = round(float((int8[known].argmax(1) == truth).mean()), 4)
    return result


def as_default_rule(parity: dict) -> dict:
    """Whether the int8 model may run by default in place of fp32 (``AS_DEFAULT_*``), from its
    comparison with fp32 on labelled held-out images; not met without labels."""
    met = ("accuracy_int8" in parity and parity["top1_agreement"] >= AS_DEFAULT_MIN_AGREEMENT
           and parity["accuracy_int8"] >= parity["accuracy_fp32"] - AS_DEFAULT_MAX_ACCURACY_LOSS)
    return {"min_top1_agreement": AS_DEFAULT_MIN_AGREEMENT, "max_accuracy_loss": AS_DEFAULT_MAX_ACCURACY_LOSS,
            "met": bool(met)}


def run_model(path: Path, batch: np.ndarray, input_name: str) -> np.ndarray:
    session = create_session(read_model_bytes(path), path, None)
    return np.concatenate([session.run(None, {input_name: batch[i:i + 64]})[0] for i in range(0, len(batch), 64)])


def quantize_model(fp32_path: str | os.PathLike, run=None, *, calibration=None, holdout=None,
                   settings: QuantSettings | None = None, holdout_size: int = DEFAULT_HOLDOUT_SIZE,
                   min_agreement: float = DEFAULT_MIN_AGREEMENT, refit: bool = True) -> dict:
    """Write ``model.int8.onnx`` and its card beside the exported fp32 ``model.onnx``; returns
    the int8 card.

    ``run``: the run directory or checkpoint the model was exported from (default: the card's
    ``source_checkpoint``); calibration defaults to its training split, the parity check to its
    test split. ``calibration`` / ``holdout``: a split folder, manifest CSV or image folder
    instead. ``refit``: for a probe run, refit its head on the int8 trunk's features of the run's
    training split (``refit_head``). Raises ``ArtstyleError``, writing nothing, when top-1
    agreement with fp32 on the held-out images is below ``min_agreement``."""
    from .checkpoint import resolve_weights
    from .export import sha256_file
    from ..infer.predictor import read_card

    settings = settings or QuantSettings()
    fp32_path = Path(fp32_path)
    card = read_card(fp32_path)
    if card.get("precision", "fp32") != "fp32":
        raise ArtstyleError(f"{fp32_path}: already quantised ({card['precision']}); give the fp32 model")
    weights = resolve_weights(run or card.get("source_checkpoint") or fp32_path.with_suffix(".safetensors"))
    input_name = card["input"]["name"]
    calib_set, held_set = choose_images(weights, calibration, holdout, settings.calibration_size, holdout_size)
    tick = time.perf_counter()
    calib, _ = preprocess_files(calib_set, card)
    held, held_set = preprocess_files(held_set, card)
    output = int8_path(fp32_path)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.stem}.") as tmp:
        tmp_int8 = Path(tmp) / output.name
        kept = quantize_file(fp32_path, tmp_int8, calib, input_name, settings)
        log.info(f"quantised in {time.perf_counter() - tick:.1f}s")
        head = refit_head(tmp_int8, fp32_path, weights, run_split_dir(weights), card.get("temperature", 1.0)) if refit else None
        parity = agreement(run_model(fp32_path, held, input_name), run_model(tmp_int8, held, input_name),
                           held_set.labels, card["classes"])
        if parity["top1_agreement"] < min_agreement:
            raise ArtstyleError(
                f"int8 parity check failed: top-1 agreement with fp32 is {parity['top1_agreement']:.1%} on "
                f"{parity['holdout_images']} held-out images (minimum {min_agreement:.1%}); no int8 model was written"
            )
        int8_card = dict(card, precision="int8", onnx_sha256=sha256_file(tmp_int8),
                         onnx_bytes=tmp_int8.stat().st_size)
        int8_card["quantization"] = {
            **settings.describe(), "tool": "onnxruntime.quantization.quantize_static",
            "fp32_nodes": len(kept), "calibration_images": int(len(calib)),
            "calibration_source": calib_set.source, "holdout_source": held_set.source,
            **parity, "min_agreement": min_agreement, "as_default": as_default_rule(parity),
            "fp32_model": fp32_path.name, "fp32_onnx_sha256": card["onnx_sha256"],
            "head": head or {"refit_on_int8_features": False},
        }
        if head:
            int8_card["metrics"] = {k: head[k] for k in ("C", "val_acc", "val_agreement") if head[k] is not None}  # the refitted head's
        if "accuracy_int8" in parity and "test split" in held_set.source:
            # The int8 model's own figure on the run's test split (the fp32 card's is fp32's).
            int8_card["test_metrics"] = {"n": parity["labelled_images"], "accuracy": parity["accuracy_int8"],
                                         "split": held_set.source}
        # Card first, then the model, as for the fp32 export.
        output.with_suffix(".json").write_text(json.dumps(int8_card, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_int8, output)
    return int8_card
