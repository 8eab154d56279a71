"""Which published processor directories build with the installed packages, and how they fail.

For each `operators/checkpoint_files/<org>__<name>/` this assembles a directory the way a twin
does: a small trained tokenizer holding the checkpoint's special tokens (`operators/tokenizer.py`),
plus the published preprocessor, processor, video-processor, chat-template and config files.
It then tries three ways to build the processor and prints one line per try:

- `auto`: `AutoProcessor.from_pretrained(dir)` (transformers picks the torchvision backend when
  torchvision imports, else the PIL one);
- `pil`: `AutoProcessor.from_pretrained(dir, use_fast=False)`;
- `manual`: the processor class built by hand from a PIL image processor, the tokenizer and
  `video_processor=None` where the class has a video processor.

    python bench/processor_load_check.py [--json out.json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _REPO / "bench"]
sys.path.insert(0, str(_REPO))

from operators.tokenizer import build_tokenizer  # noqa: E402

FILES = Path(__file__).resolve().parents[1] / "operators" / "checkpoint_files"
_COPIED = (
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "config.json",
)


def small_tokenizer(directory: Path) -> Any:
    """A ~500-token tokenizer carrying the checkpoint's special and added tokens."""
    from transformers import PreTrainedTokenizerFast

    config = json.loads((directory / "tokenizer_config.json").read_text())
    added = [token for token in config["added_tokens"] if token]
    specials = {
        key: config.get(key) for key in ("bos_token", "eos_token", "pad_token", "unk_token")
    }
    base = build_tokenizer(
        added,
        bos=specials["bos_token"] or specials["eos_token"],
        eos=specials["eos_token"],
        pad=specials["pad_token"],
        unk=specials["unk_token"],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        padding_side="left",
        extra_special_tokens=config.get("extra_special_tokens") or {},
        **{key: value for key, value in specials.items() if value},
    )


def assemble(directory: Path, target: Path) -> Any:
    """Write tokenizer plus published processing files into `target`; return the tokenizer."""
    tokenizer = small_tokenizer(directory)
    tokenizer.save_pretrained(target)
    for name in _COPIED:
        if (directory / name).exists():
            shutil.copy(directory / name, target / name)
    return tokenizer


def _error(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def try_auto(target: Path, **kwargs: Any) -> str:
    """Build through AutoProcessor; 'ok <classes>' or the error's first line."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(target, **kwargs)
    except Exception as exc:
        return _error(exc)
    parts = [type(processor).__name__]
    for attribute in ("image_processor", "video_processor"):
        value = getattr(processor, attribute, None)
        if value is not None:
            parts.append(f"{attribute}={type(value).__name__}")
    return "ok " + " ".join(parts)


def try_manual(target: Path, tokenizer: Any) -> str:
    """PIL image processor + tokenizer + video_processor=None, built by hand."""
    from transformers import AutoImageProcessor
    from transformers.models.auto.processing_auto import processor_class_from_name

    config = (
        json.loads((target / "processor_config.json").read_text())
        if (target / "processor_config.json").exists()
        else {}
    )
    pre = json.loads((target / "preprocessor_config.json").read_text())
    name = config.get("processor_class") or pre.get("processor_class")
    try:
        cls = processor_class_from_name(name)
        image_processor = AutoImageProcessor.from_pretrained(target, use_fast=False)
        kwargs = {k: v for k, v in config.items() if k != "processor_class"}
        template = _template(target)
        if template is not None:
            kwargs["chat_template"] = template
        if "video_processor" in inspect.signature(cls.__init__).parameters:
            kwargs["video_processor"] = None
        processor = cls(image_processor=image_processor, tokenizer=tokenizer, **kwargs)
    except Exception as exc:
        return _error(exc)
    return f"ok {type(processor).__name__} image_processor={type(image_processor).__name__}"


def _template(target: Path) -> str | None:
    if (target / "chat_template.jinja").exists():
        return (target / "chat_template.jinja").read_text()
    if (target / "chat_template.json").exists():
        return json.loads((target / "chat_template.json").read_text())["chat_template"]
    return None


def check(directory: Path) -> dict[str, str]:
    """The three build results for one published directory."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp)
        try:
            tokenizer = assemble(directory, target)
        except Exception as exc:
            return {"tokenizer": _error(exc)}
        return {
            "auto": try_auto(target),
            "pil": try_auto(target, use_fast=False),
            "manual": try_manual(target, tokenizer),
        }


def main() -> int:
    """Print one block per checkpoint directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    try:
        import torchvision

        vision = f"torchvision {torchvision.__version__}"
    except Exception as exc:
        vision = f"no torchvision ({_error(exc)})"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {vision}")
    results = {}
    for directory in sorted(FILES.iterdir()):
        if not directory.is_dir():
            continue
        try:
            results[directory.name] = check(directory)
        except Exception:
            results[directory.name] = {"crash": traceback.format_exc(limit=2)}
        print(directory.name)
        for key, value in results[directory.name].items():
            print(f"  {key:7} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
