"""nerkit: fine-tune Hugging Face encoders for named-entity recognition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:
    from .engine.predictor import Predictor
    from .tagger import Span, Tagger

__all__ = ["Predictor", "Span", "Tagger", "__version__", "load"]


def load(model_dir: str, backend: str = "torch", device: str | None = None, constrained: bool | None = None,
         max_tokens: int | None = None, batch_size: int | None = None, lanes: int = 0) -> Tagger:
    """Load a trained model folder as a Tagger: `nerkit.load("runs/x/model")("Text to tag.")`.

    Importing torch and transformers waits until this call, so `import nerkit` stays light.
    See nerkit.tagger.load for the arguments."""
    from .tagger import load as _load

    return _load(model_dir, backend=backend, device=device, constrained=constrained, max_tokens=max_tokens,
                 batch_size=batch_size, lanes=lanes)


def __getattr__(name: str):
    if name in ("Span", "Tagger"):
        from . import tagger

        return getattr(tagger, name)
    if name == "Predictor":
        from .engine.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'nerkit' has no attribute {name!r}")
