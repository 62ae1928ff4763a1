"""The query pipeline: bytes or arrays in, vectors out, Annoy hits back.

``ModelSet`` loads the trained checkpoints lazily from the artifacts directory
(once per process, never at import time: Celery forks children and CUDA must
not be touched in the parent). ``encode_photo`` etc. return (vector, timings)
so every stage's cost can be reported.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_FILES = {
    "encoder": "encoder.pt",
    "sketch2image": "sketch2image.pt",
    "text": "text.pt",
    "classifier": "classifier-fused.pt",
    "classifier_image": "classifier-image.pt",
    "captioner": "captioner.pt",
}
CHECKPOINT_KIND = {"classifier_image": "classifier"}


class ModelMissingError(RuntimeError):
    """A model this query needs has not been trained yet."""


@contextmanager
def timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000.0


SKETCH_ROADS = ("direct", "gan")


@dataclass
class Encoded:
    vector: np.ndarray
    space: str  # which index space to search
    timings_ms: dict[str, float]
    generated: np.ndarray | None = None  # the GAN's image for a sketch query, uint8 (80, 60, 3)
    categories: dict[str, float] | None = None  # the query's likeliest articleTypes (``search.rerank``)
    neighbour_vote: bool = False  # a photo: its nearest items' vote joins ``categories`` before re-ranking


class ModelSet:
    """Trained models of one artifacts directory, loaded on first use."""

    def __init__(self, models_dir: Path, device: str = "cpu", threads: int = 0, categories: bool = True):
        self.models_dir = Path(models_dir)
        self.device = device
        self.categories = categories  # picture queries carry their likeliest categories (re-ranking on)
        self.threads = threads
        self._lock = threading.RLock()  # a text model loads its encoder from inside _load
        self._loaded: dict[str, object] = {}

    def path(self, role: str) -> Path:
        return self.models_dir / MODEL_FILES[role]

    def available(self, role: str) -> bool:
        return self.path(role).is_file()

    def _load(self, role: str):
        with self._lock:
            if role in self._loaded:
                return self._loaded[role]
            import torch

            from models.checkpoint import load_checkpoint

            if self.threads:
                torch.set_num_threads(self.threads)
            if not self.available(role):
                raise ModelMissingError(f"the {role} model is not trained yet: run `python manage.py train {role}`")
            payload = load_checkpoint(self.path(role), kind=CHECKPOINT_KIND.get(role, role))
            if role == "encoder":
                from models.train_encoder import load_encoder

                obj = (load_encoder(payload, self.device), payload)
            elif role == "sketch2image":
                from models.train_sketch2image import load_generator

                obj = (load_generator(payload, self.device), payload)
            elif role in ("classifier", "classifier_image"):
                from models.classifier import load_classifier

                obj = (load_classifier(payload, self.device), payload)
            elif role == "captioner":
                from models.captioner import load_captioner

                obj = (load_captioner(payload, self.device), payload)
            elif role == "text":
                from models.train_text import load_text_model

                encoder_payload = self._load("encoder")[1]
                obj = (load_text_model(payload, encoder_payload, self.device), payload)
            else:  # pragma: no cover - guarded by MODEL_FILES
                raise KeyError(role)
            self._loaded[role] = obj
            return obj

    def encoder(self):
        return self._load("encoder")[0]

    def get(self, role: str):
        """The loaded network (or model object) of a role."""
        return self._load(role)[0]

    def version(self, role: str) -> str:
        return self._load(role)[1]["version"]

    def text_space(self) -> str:
        """The index space text queries search: ``text`` (a joint space of its own) or ``image``."""
        return "text" if self.get("text").space == "joint" else "image"

    def encode_text(self, text: str) -> Encoded:
        timings: dict[str, float] = {}
        with timed(timings, "text_encoder"):
            vec = self.get("text").encode_text([text])[0]
        return Encoded(vec, self.text_space(), timings)

    def embed_text_space(self, images: np.ndarray) -> np.ndarray:
        """Catalog photos in the text model's joint space (the ``text`` index space)."""
        import torch

        with torch.inference_mode():
            return self.get("text").encode_images(images)

    def encode_photo_text_space(self, image: np.ndarray) -> Encoded:
        """One catalog photo in the text model's joint space: how words find a newly added item."""
        timings: dict[str, float] = {}
        with timed(timings, "text_image_encoder"):
            vec = self.embed_text_space(image[None])[0]
        return Encoded(np.asarray(vec, np.float32), "text", timings)

    def generate_caption(self, image: np.ndarray) -> str:
        """The LSTM captioner's draft title for one photo (beam search)."""
        from models.captioner import generate_captions

        return generate_captions(self.get("captioner"), image[None])[0]

    def embed_images(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """uint8 (N, 80, 60, 3) -> (N, D) float32 in Image2Vec space.

        Every photo, sketch and generated image is embedded with its mirror image and the two vectors
        averaged (``embed_array(flip_average=True)``): the catalog shows items facing either way, and
        on the test split this lifts photo P@5 by about half a point (README, Measured).
        """
        import torch

        from models.train_encoder import embed_array

        with torch.inference_mode():
            return embed_array(self.encoder(), images, torch.device(self.device), batch_size=batch_size,
                               flip_average=True)

    def category_probs(self, vectors: np.ndarray, images: np.ndarray | None = None,
                       classifier_probs: np.ndarray | None = None) -> list[dict[str, float]]:
        """The likeliest articleTypes of picture queries (``search.rerank``), from their Image2Vec vectors:
        the encoder's cosine head, averaged for photos (``images``, uint8 (N, 80, 60, 3)) with the
        image-only classifier's flip-averaged prediction when that model is trained on the same classes
        (``classifier_probs``: that prediction, (N, C), when the caller has already made it)."""
        import torch

        from search.rerank import top_categories

        encoder, payload = self._load("encoder")
        names = payload["config"]["class_names"]
        with torch.inference_mode():
            weight = torch.nn.functional.normalize(encoder.class_weight.float(), dim=1).cpu()
            logits = encoder.config.scale * (torch.as_tensor(np.asarray(vectors, np.float32)) @ weight.t())
            probs = logits.softmax(dim=1).numpy()
            if (images is not None or classifier_probs is not None) and self.available("classifier_image"):
                from models.classifier import MAIN_HEAD, predict

                classifier = self.get("classifier_image")
                if list(classifier.config.label_names[MAIN_HEAD]) == list(names):
                    if classifier_probs is None:
                        classifier_probs = predict(classifier, images, flip_average=True)[MAIN_HEAD]
                    probs = (probs + classifier_probs) / 2
        return top_categories(probs, names)

    def looked_at(self, image: np.ndarray, category: str = "") -> tuple[np.ndarray, str]:
        """Where Image2Vec looked in a photo (uint8 (80, 60, 3)) for ``category`` (else its own likeliest
        articleType): its class activation map as a heatmap over the photo, and the category it was drawn for.
        A search hit shows this for its own category."""
        import torch

        from models.classifier import cam_overlay
        from models.training import to_float_images

        encoder, payload = self._load("encoder")
        names = list(payload["config"]["class_names"])
        if category not in names:
            vector = self.embed_images(image[None])
            probs = self.category_probs(vector)[0]
            category = max(probs, key=probs.get)
        with torch.inference_mode():
            x = to_float_images(torch.from_numpy(np.ascontiguousarray(image[None])).to(self.device))
            cam = encoder.class_activation_map(x, names.index(category))[0].float().cpu().numpy()
        return cam_overlay(image, cam), category

    def encode_photo(self, image: np.ndarray) -> Encoded:
        timings: dict[str, float] = {}
        with timed(timings, "encoder"):
            vec = self.embed_images(image[None])[0]
        categories = None
        if self.categories:
            with timed(timings, "classifier"):
                categories = self.category_probs(vec[None], image[None])[0]
        return Encoded(vec, "image", timings, categories=categories, neighbour_vote=categories is not None)

    def generate_images(self, sketches: np.ndarray) -> np.ndarray:
        """uint8 sketches (N, 80, 60) -> the GAN's photo-like images (N, 80, 60, 3)."""
        import torch

        from models.train_sketch2image import generate

        with torch.inference_mode():
            return generate(self._load("sketch2image")[0], sketches)

    def embed_sketches(self, sketches: np.ndarray, road: str) -> np.ndarray:
        """Image2Vec vectors of sketches by one road: ``direct`` (the encoder saw sketches in training)
        or ``gan`` (sketch -> pix2pix image -> encoder)."""
        if road == "gan":
            return self.embed_images(self.generate_images(sketches))
        return self.embed_images(np.repeat(sketches[..., None], 3, axis=-1))

    def encode_sketch(self, sketch: np.ndarray, road: str, imagine: bool = True) -> Encoded:
        """A normalised sketch (80, 60) -> vector; ``imagine`` also returns the GAN's picture of it."""
        if road not in SKETCH_ROADS:
            raise ValueError(f"unknown sketch road {road!r}; choose from {', '.join(SKETCH_ROADS)}")
        timings: dict[str, float] = {}
        generated = None
        if road == "gan" or (imagine and self.available("sketch2image")):
            with timed(timings, "gan"):
                generated = self.generate_images(sketch[None])[0]
        with timed(timings, "encoder"):
            source = generated if road == "gan" else np.repeat(sketch[..., None], 3, axis=-1)
            vec = self.embed_images(source[None])[0]
            # the encoder's own head: it saw sketches, the classifier did not
            categories = self.category_probs(vec[None])[0] if self.categories else None
        return Encoded(vec, "image", timings, generated, categories)
