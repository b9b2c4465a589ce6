"""nerkit: fine-tune Hugging Face encoders for named-entity recognition."""

__version__ = "0.1.0"
