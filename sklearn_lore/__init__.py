"""sklearn_lore: personalized low-rank reward models as scikit-learn estimators.

Public names only; heavy modules (torch, sentence-transformers) load on first use.
"""

__version__ = "0.1.0"

__all__ = ["LowRankRewardEstimator", "SentencePairEmbedder", "save", "load", "__version__"]

_LAZY = {
    "LowRankRewardEstimator": "sklearn_lore.estimator",
    "SentencePairEmbedder": "sklearn_lore.embedding",
    "save": "sklearn_lore.io",
    "load": "sklearn_lore.io",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sklearn_lore' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
