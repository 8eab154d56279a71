"""One forward's inputs, assembled from a chunk of post work: prefix rows and task rows.

Image-level items get one prefix row per unique image (the one-image template); each post with
post-level items gets one prefix row holding all its images in order and its framed text. Every
unique image is encoded once for the whole chunk and fills all of its placeholders. Each pending
item becomes one task row continuing its prefix row; items asked twice in the chunk share a row.

Where the family groups a prompt's images (`Family.groups_images`), a post-level prefix with
two or more images takes each image's grouped encoding, kept apart from its lone one (the
image-level prefixes'); grouped encodings are encoded last, together, so the model sees them as
one group of at least two (a lone one is encoded twice, the copy unused).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from operators.batching import (
    ImageEncoding,
    collate_images,
    collate_prefixes,
    encode_task_rows,
    encoding_key,
)
from operators.families import family_of
from operators.forward import PrefixBatch, TaskRows
from operators.jobs import TaskKind
from operators.loading import Vlm
from operators.prefixes import image_prefix_ids, post_prefix_ids
from operators.work import Item, PostWork, image_task_text, post_task_text


@dataclass
class ForwardPlan:
    """A forward's tensors and, per output, the item it answers."""

    prefix: PrefixBatch
    rows: TaskRows
    row_items: list[Item]  # one per task row, in row order
    # The unique encodings (`encoding_key`: an image's hash and form), in the order encoded.
    image_shas: list[str]
    embed: bool
    # The posts whose embedding is asked, in the order of `prefix.embed_rows`.
    embedded_posts: list[str] = field(default_factory=list)


@dataclass
class _Builder:
    vlm: Vlm
    encodings: Mapping[str, ImageEncoding]
    images: dict[str, int] = field(default_factory=dict)  # sha256 -> index among unique images
    prefixes: list[list[int]] = field(default_factory=list)
    image_order: list[int] = field(default_factory=list)
    images_per_row: list[int] = field(default_factory=list)
    prefix_of: dict[str, int] = field(default_factory=dict)  # sha256 or post key -> prefix row
    row_prefix: list[int] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)
    row_items: dict[Item, None] = field(default_factory=dict)  # ordered set
    embed: bool = False
    embed_rows: dict[str, int] = field(default_factory=dict)  # post key -> its prefix row

    def add_image_items(self, work: PostWork) -> None:
        for sha, task in work.image_todo:
            self._image(sha)
            if task.kind == TaskKind.EMBED:
                self.embed = True
                continue
            if sha not in self.prefix_of:
                expansion = self.encodings[sha].expansion
                self._prefix(sha, image_prefix_ids(self.vlm, expansion), [sha])
            suffix = self.vlm.layout.task_text(image_task_text(self.vlm, task))
            self._row(self.prefix_of[sha], (sha, task), suffix)

    def add_post_items(self, work: PostWork) -> None:
        tasks = work.post_todo
        if not tasks:
            return
        images = work.job.images
        grouped = family_of(self.vlm.family).groups_images and len(images) > 1
        keys = [encoding_key(image.sha256, grouped) for image in images]
        if work.post_key not in self.prefix_of:
            expansions = [self.encodings[key].expansion for key in keys]
            self._prefix(work.post_key, post_prefix_ids(self.vlm, expansions, work.text), keys)
        tail = self.vlm.prompts.layout(len(keys)).tail
        for task in tasks:
            if task.kind == TaskKind.EMBED:  # read off the prefix's prefill: no task row
                self.embed_rows[work.post_key] = self.prefix_of[work.post_key]
                continue
            suffix = post_task_text(self.vlm, task) + tail
            self._row(self.prefix_of[work.post_key], (work.post_key, task), suffix)

    def _image(self, sha: str) -> int:
        return self.images.setdefault(sha, len(self.images))

    def _prefix(self, owner: str, ids: list[int], shas: Sequence[str]) -> None:
        self.prefix_of[owner] = len(self.prefixes)
        self.prefixes.append(ids)
        self.image_order += [self._image(sha) for sha in shas]
        self.images_per_row.append(len(shas))

    def _row(self, prefix: int, item: Item, suffix: str) -> None:
        if item not in self.row_items:
            self.row_items[item] = None
            self.row_prefix.append(prefix)
            self.suffixes.append(suffix)


def build_plan(
    vlm: Vlm, works: Sequence[PostWork], encodings: Mapping[str, ImageEncoding]
) -> ForwardPlan:
    """The chunk's prefix batch and task rows; `encodings` hold every image the works need."""
    builder = _Builder(vlm, encodings)
    family = family_of(vlm.family)
    for work in works:
        builder.add_image_items(work)
        builder.add_post_items(work)
    input_ids, mask = collate_prefixes(builder.prefixes, vlm.tokenizer.pad_token_id)
    shas, moved = _encoding_order(list(builder.images), encodings)
    prefix = PrefixBatch(
        input_ids=input_ids,
        attention_mask=mask,
        pixel_inputs=collate_images([encodings[sha] for sha in shas]),
        image_order=tuple(moved[index] for index in builder.image_order),
        images_per_row=tuple(builder.images_per_row),
        embed_rows=tuple(builder.embed_rows.values()),
        entries_per_image=tuple(
            family.feature_entries(encodings[sha].pixel_inputs) for sha in shas
        ),
        tiles_per_image=tuple(family.tiles(encodings[sha].pixel_inputs) for sha in shas),
    )
    items = list(builder.row_items)
    generate = [task.kind == TaskKind.DESCRIBE for _, task in items]
    rows = encode_task_rows(vlm, builder.row_prefix, builder.suffixes, generate)
    return ForwardPlan(prefix, rows, items, shas, builder.embed, list(builder.embed_rows))


def _encoding_order(
    keys: list[str], encodings: Mapping[str, ImageEncoding]
) -> tuple[list[str], list[int]]:
    """The encodings in pass order (lone ones first, then the grouped ones as one group of two
    or more), and where each of `keys` moved to."""
    order = sorted(range(len(keys)), key=lambda index: encodings[keys[index]].grouped)
    moved = [0] * len(keys)
    for position, index in enumerate(order):
        moved[index] = position
    ordered = [keys[index] for index in order]
    if sum(encodings[key].grouped for key in keys) == 1:
        ordered.append(ordered[-1])  # the model groups two or more: a copy keeps it grouped
    return ordered, moved
