"""Database models: catalog items, index versions with their Annoy-id mapping, and job progress."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone


class Item(models.Model):
    class Source(models.TextChoices):
        CATALOG = "catalog", "catalog import"
        UPLOAD = "upload", "staff upload"

    sku = models.CharField("catalog id", max_length=64, unique=True)
    title = models.CharField(max_length=500)
    category = models.CharField("article type", max_length=100, db_index=True)
    master_category = models.CharField(max_length=100, blank=True)
    sub_category = models.CharField(max_length=100, blank=True)
    gender = models.CharField(max_length=40, blank=True, db_index=True)
    colour = models.CharField(max_length=60, blank=True, db_index=True)
    season = models.CharField(max_length=40, blank=True)
    usage = models.CharField(max_length=60, blank=True)
    year = models.IntegerField(null=True, blank=True)
    image_path = models.CharField(max_length=1000, help_text="absolute path of the image file on disk")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.CATALOG)
    hidden = models.BooleanField(default=False, help_text="hidden items never appear in search or browsing")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.sku} · {self.title}"

    def get_absolute_url(self) -> str:
        """Public URLs name an item by its catalog id, the id its page shows (never the row's primary key)."""
        return reverse("item", args=[self.sku])

    @property
    def image_url(self) -> str:
        return reverse("item-image", args=[self.sku])

    @property
    def heatmap_url(self) -> str:
        """Where the search model looked in this item's photo for its category (``views.catalog.item_heatmap``)."""
        return reverse("item-heatmap", args=[self.sku]) + "?" + urlencode({"category": self.category})


class IndexVersion(models.Model):
    """One built index (Annoy or IVF) on disk. Exactly one row is active; switching is one transaction."""

    class Status(models.TextChoices):
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"
        PRUNED = "pruned"

    name = models.CharField(max_length=64, unique=True)
    path = models.CharField(max_length=1000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    is_active = models.BooleanField(default=False, db_index=True)
    encoder_version = models.CharField(max_length=64, blank=True)
    metric = models.CharField(max_length=20, default="angular")
    dim = models.IntegerField(default=0)
    n_trees = models.IntegerField(default=0)
    search_k = models.IntegerField(default=0)
    count = models.IntegerField(default=0)
    manifest = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    activated = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_index")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.count} items{', active' if self.is_active else ''})"


class IndexEntry(models.Model):
    """Annoy id -> item, for one index version."""

    version = models.ForeignKey(IndexVersion, on_delete=models.CASCADE, related_name="entries")
    annoy_id = models.IntegerField()
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="index_entries")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "annoy_id"], name="unique_annoy_id")]
        indexes = [models.Index(fields=["version", "item"])]


class Job(models.Model):
    """Progress and outcome of long work (reindex, import), polled by the progress page."""

    class Kind(models.TextChoices):
        REINDEX = "reindex"
        IMPORT = "import"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    stage = models.CharField(max_length=100, blank=True)
    done = models.IntegerField(default=0)
    total = models.IntegerField(default=0)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True, help_text="last progress a worker reported")
    builder = models.CharField(max_length=255, blank=True, default="",
                               help_text="a reindex: the id of the one task that builds its index (claimed once)")

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} {self.status}"

    @property
    def last_sign_of_life(self):
        return self.heartbeat or self.started or self.created

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else (100 if self.status == self.Status.DONE else 0)


class ReindexChunk(models.Model):
    """One chunk of a reindex's plan: the chunk that marks itself done last sees the plan complete and asks
    for the build (a conditional update per chunk, so a redelivered chunk neither counts twice nor redoes it)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    index = models.IntegerField()
    items = models.IntegerField()
    done = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="one_row_per_chunk")]

    def __str__(self) -> str:
        return f"job {self.job_id} chunk {self.index} ({'done' if self.done else 'to do'})"


class LiveVector(models.Model):
    """An item's vector kept outside the Annoy index: added or changed since the active version was built.

    Searches merge an exact search over these rows with the index's hits, so a new item is findable at
    once, by picture and (when the index has a text space) by words; the next reindex folds the item into the index and deletes the row (unless the item changed
    again while it was building).
    """

    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="live_vector")
    vector = models.BinaryField(help_text="float32 bytes, L2-normalised")
    encoder_version = models.CharField(max_length=64, blank=True)
    text_vector = models.BinaryField(null=True, blank=True,
                                     help_text="the photo in the text model's joint space (words find it), if any")
    text_version = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"live vector of item {self.item_id}"

    def as_array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.vector), dtype=np.float32)


class ApiToken(models.Model):
    """A bearer token for the write API (``Authorization: Bearer <token>``); acts as its staff user.

    Only the token's SHA-256 is stored: the token itself is shown once, when it is made (admin or
    ``manage.py create_token``), and cannot be read back. ``expires`` empty: it never expires."""

    key = models.CharField("SHA-256 of the token", max_length=64, unique=True)
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens",
                             help_text="the token acts as this user, who must be active staff")
    name = models.CharField(max_length=100, blank=True, help_text="what or who uses it, e.g. 'catalog feed'")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True, help_text="empty: never")

    def __str__(self) -> str:
        return f"token {self.name or self.pk} of {self.user}"

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name: str = "", expires=None) -> tuple[ApiToken, str]:
        """A new token for ``user``: (the row, the token itself, which only the caller ever sees)."""
        token = secrets.token_urlsafe(32)
        return cls.objects.create(key=cls.digest(token), user=user, name=name, expires=expires), token

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now()


@receiver(post_delete, sender=Item)
def remove_owned_image(sender, instance: Item, **kwargs) -> None:
    """A deleted item takes its image file with it when the file is its own: an upload under MEDIA_ROOT. Catalog
    images (under CATALOG_DIR, read-only, the catalog's) are left alone. Runs once the deletion is committed."""
    path = Path(instance.image_path)
    media = Path(settings.MEDIA_ROOT).resolve()
    if instance.source != Item.Source.UPLOAD or not path.resolve().is_relative_to(media):
        return
    transaction.on_commit(lambda: path.unlink(missing_ok=True))
