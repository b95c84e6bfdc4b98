"""The one error that model loading and the model cache raise (ferret/models.py, ferret/model_cache.py)."""


class ModelError(ValueError):
    """A model name, path, dtype or device is unusable; the message is one line."""
