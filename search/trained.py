"""The trained models as the search uses them: one small loaded-model object per checkpoint.

``TrainedModels`` knows where each checkpoint of an artifacts directory lives and loads it on first use,
once per process and never at import time (Celery forks its children, and CUDA must not be touched in
the parent). Each loaded model answers for itself:

=================  ======================  ===============  ==============================================
role               file                    object           does
=================  ======================  ===============  ==============================================
encoder            encoder.pt              ``Image2Vec``    pictures -> vectors; its cosine head's
                                                            categories; where it looked (CAM heatmap)
sketch2image       sketch2image.pt         ``SketchToImage`` sketches -> photo-like pictures (pix2pix)
text               text.pt                 ``TextModel``    words (and catalog photos) -> its own space
classifier         classifier-fused.pt     ``Classifier``   photo + title -> category, gender, colour
classifier_image   classifier-image.pt     ``Classifier``   the same from the photo alone
captioner          captioner.pt            ``Captioner``    photo -> a draft title
=================  ======================  ===============  ==============================================

The checkpoints and their loaders are ``models/``'s (``models.checkpoint``); nothing here trains.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILES = {
    "encoder": "encoder.pt",
    "sketch2image": "sketch2image.pt",
    "text": "text.pt",
    "classifier": "classifier-fused.pt",
    "classifier_image": "classifier-image.pt",
    "captioner": "captioner.pt",
}
CHECKPOINT_KIND = {"classifier_image": "classifier"}  # the image-only twin is a classifier checkpoint too


class ModelMissingError(RuntimeError):
    """A model this query needs has not been trained yet."""


@dataclass
class LoadedModel:
    """A checkpoint's network, ready to run, with the checkpoint as saved (its ``version``, config, figures)."""

    net: Any
    payload: dict
    device: str = "cpu"

    @property
    def version(self) -> str:
        return self.payload["version"]


@dataclass
class Image2Vec(LoadedModel):
    """The image encoder: photos, sketches and generated pictures into the index's ``image`` space."""

    net: Any  # models.image_encoder.ImageEncoder

    @property
    def dim(self) -> int:
        return self.net.config.embed_dim

    @property
    def class_names(self) -> list[str]:
        return list(self.payload["config"]["class_names"])

    def embed(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """uint8 (N, 80, 60, 3) -> (N, D) float32.

        Every picture is embedded with its mirror image and the two vectors averaged: the catalog shows
        items facing either way (the lift on the test split is in docs/experiments.md)."""
        import torch

        from models.train_encoder import embed_array

        with torch.inference_mode():
            return embed_array(self.net, images, torch.device(self.device), batch_size=batch_size, flip_average=True)

    def embed_and_describe(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 photos (N, 80, 60, 3) -> (``embed``'s vectors, the frozen descriptors (2, N, D') of both
        views) from one pass over the CNN: the image-only classifier reads the same frozen CNN."""
        import torch

        from models.image_encoder import embed_and_describe_array

        with torch.inference_mode():
            return embed_and_describe_array(self.net, images, self.device)

    def category_probs(self, vectors: np.ndarray, drawn: bool = False) -> np.ndarray:
        """(N, D) vectors -> (N, C) probabilities over ``class_names`` from the encoder's own cosine head.

        ``drawn``: the vectors are of drawings, whose guess is corrected for the share of each class among the
        drawings the encoder trained on (``models.train_encoder.drawn_prior_ratio``; none in older checkpoints)."""
        import torch

        with torch.inference_mode():
            weight = torch.nn.functional.normalize(self.net.class_weight.float(), dim=1).cpu()
            logits = self.net.config.scale * (torch.as_tensor(np.asarray(vectors, np.float32)) @ weight.t())
            probs = logits.softmax(dim=1).numpy()
        ratio = self.payload.get("train", {}).get("drawn_prior_ratio") if drawn else None
        if ratio is not None and len(ratio) == probs.shape[1]:
            probs = probs * np.asarray(ratio, dtype=probs.dtype)
            probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def heatmap(self, image: np.ndarray, category: str) -> np.ndarray:
        """Where the encoder looked in a photo (uint8 (80, 60, 3)) for ``category`` (one of ``class_names``):
        its class activation map over the photo, uint8 (80, 60, 3)."""
        import torch

        from models.classifier import cam_overlay
        from models.training import inference_precision, to_float_images

        with torch.inference_mode(), inference_precision(self.device):
            x = to_float_images(torch.from_numpy(np.ascontiguousarray(image[None])).to(self.device))
            cam = self.net.class_activation_map(x, self.class_names.index(category))[0].float().cpu().numpy()
        return cam_overlay(image, cam)


@dataclass
class SketchToImage(LoadedModel):
    """The pix2pix generator: a sketch's photo-like picture."""

    net: Any  # models.pix2pix.UnetGenerator

    def generate(self, sketches: np.ndarray) -> np.ndarray:
        """uint8 sketches (N, 80, 60) -> uint8 pictures (N, 80, 60, 3)."""
        import torch

        from models.train_sketch2image import generate

        with torch.inference_mode():
            return generate(self.net, sketches)


@dataclass
class TextModel(LoadedModel):
    """The text model: titles and queries (and catalog photos, for its joint space) into one space."""

    net: Any  # models.train_text.TextSearchModel

    @property
    def dim(self) -> int:
        return self.net.dim

    @property
    def index_space(self) -> str:
        """The index space words search: ``text`` (a joint space of its own) or ``image`` (Image2Vec's)."""
        return "text" if self.net.space == "joint" else "image"

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.net.encode_text(texts)

    def reads_descriptors_of(self, encoder: Image2Vec) -> bool:
        """Whether this model's photo side reads ``encoder``'s frozen descriptors (``encode_descriptors``)."""
        return self.net.reads_descriptors_of(encoder.version)

    def encode_descriptors(self, descriptors: np.ndarray) -> np.ndarray:
        """The encoder's frozen descriptors of catalog photos (``Image2Vec.embed_and_describe``, view 0)
        -> what ``encode_images`` gives for those photos."""
        return self.net.encode_descriptors(descriptors)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """Catalog photos uint8 (N, 80, 60, 3) in the text model's space (the ``text`` index space)."""
        import torch

        with torch.inference_mode():
            return np.asarray(self.net.encode_images(images), np.float32)


@dataclass
class Classifier(LoadedModel):
    """The fused classifier (photo + title) or its image-only twin: category, gender, colour, sub-category."""

    net: Any  # models.classifier.FusedClassifier

    @property
    def label_names(self) -> dict[str, list[str]]:
        return self.net.config.label_names

    def predict(self, images: np.ndarray | None, titles: list[str] | None = None, flip_average: bool = False,
                descriptors: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """head -> (N, C) probabilities. ``flip_average``: mirror-averaged, as the search reads the twin.
        ``descriptors``: the frozen encoder's descriptors of the images (``Image2Vec.embed_and_describe``),
        read in place of running the CNN."""
        from models import classifier

        return classifier.predict(self.net, images, titles, flip_average=flip_average, descriptors=descriptors)

    def heatmap(self, image: np.ndarray, head: str, label: int) -> np.ndarray:
        """The CAM of ``label`` of ``head`` over one photo, uint8 (80, 60, 3)."""
        from models.classifier import cam_overlay, class_activation_map

        return cam_overlay(image, class_activation_map(self.net, image[None], head, label)[0])


@dataclass
class Captioner(LoadedModel):
    """The LSTM captioner: a draft title for a photo."""

    net: Any  # models.captioner.Captioner

    def caption(self, image: np.ndarray) -> str:
        """One photo uint8 (80, 60, 3) -> its draft title (beam search)."""
        return self.captions(image[None])[0]

    def captions(self, images: np.ndarray) -> list[str]:
        """Photos uint8 (N, 80, 60, 3) -> their draft titles, batched."""
        from models.captioner import generate_captions

        return generate_captions(self.net, images)


def resolve_device(device: str) -> str:
    """``cpu``, ``cuda``, or ``auto``: CUDA when this process sees a GPU (call it where the models run)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def read_checkpoint(models_dir: Path, role: str) -> dict:
    """The checkpoint of a role as saved (its ``version``, ``config`` and metrics), without building its network."""
    from models.checkpoint import load_checkpoint

    return load_checkpoint(Path(models_dir) / MODEL_FILES[role], kind=CHECKPOINT_KIND.get(role, role))


class TrainedModels:
    """The checkpoints of one artifacts directory, each loaded on first use."""

    def __init__(self, models_dir: Path, device: str = "cpu", threads: int = 0, int8: bool = False):
        """``int8``: the encoder's CNN in int8 on a CPU, where its checkpoint carries calibration pictures
        (``models.quantize``)."""
        self.models_dir = Path(models_dir)
        self.device = device
        self.threads = threads
        self.int8 = int8
        self._lock = threading.RLock()  # the text model loads the encoder's checkpoint from inside _load
        self._loaded: dict[str, Any] = {}

    def path(self, role: str) -> Path:
        return self.models_dir / MODEL_FILES[role]

    def available(self, role: str) -> bool:
        return self.path(role).is_file()

    def encoder(self) -> Image2Vec:
        return self._load("encoder")

    def sketch2image(self) -> SketchToImage:
        return self._load("sketch2image")

    def text(self) -> TextModel:
        return self._load("text")

    def classifier(self, image_only: bool = False) -> Classifier:
        return self._load("classifier_image" if image_only else "classifier")

    def captioner(self) -> Captioner:
        return self._load("captioner")

    def loaded(self, role: str):
        """The loaded model of a role, by its name in ``MODEL_FILES``."""
        return self._load(role)

    def version_in_memory(self, role: str) -> str | None:
        """The version of a role's model as loaded in this process; None when not loaded (nothing is loaded)."""
        with self._lock:
            model = self._loaded.get(role)
        return model.version if model is not None else None

    def _served_encoder(self, payload: dict):
        from models.quantize import int8_available, quantize_cnn
        from models.train_encoder import load_encoder
        from models.training import for_serving

        net = load_encoder(payload, self.device)
        calibration = payload.get("calibration")
        if self.int8 and self.device == "cpu" and calibration is not None and len(calibration) and int8_available():
            return quantize_cnn(net, np.asarray(calibration))
        return for_serving(net, self.device)

    def _load(self, role: str):
        with self._lock:
            if role in self._loaded:
                return self._loaded[role]
            if not self.available(role):
                raise ModelMissingError(f"the {role} model is not trained yet: run `python manage.py train {role}`")
            import torch

            if self.threads:
                torch.set_num_threads(self.threads)
            payload = read_checkpoint(self.models_dir, role)
            if role == "encoder":
                model = Image2Vec(self._served_encoder(payload), payload, self.device)
            elif role == "sketch2image":
                from models.train_sketch2image import load_generator

                model = SketchToImage(load_generator(payload, self.device), payload)
            elif role in ("classifier", "classifier_image"):
                from models.classifier import load_classifier

                model = Classifier(load_classifier(payload, self.device), payload)
            elif role == "captioner":
                from models.captioner import load_captioner

                model = Captioner(load_captioner(payload, self.device), payload)
            elif role == "text":
                from models.train_text import load_text_model

                model = TextModel(load_text_model(payload, self.encoder().payload, self.device), payload)
            else:  # pragma: no cover - guarded by MODEL_FILES
                raise KeyError(role)
            self._loaded[role] = model
            return model
