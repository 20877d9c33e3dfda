"""Data frames other than pandas' (polars), as the package reads them."""

import pandas as pd


def is_polars(X):
    """Whether ``X`` is a polars DataFrame (without importing polars)."""
    return type(X).__module__.split(".")[0] == "polars" and hasattr(X, "get_column")


def polars_as_pandas(X):
    """A polars DataFrame as a pandas one, column by column through numpy (polars'
    own ``to_pandas`` needs pyarrow); anything else as it is."""
    if not is_polars(X):
        return X
    return pd.DataFrame({name: X.get_column(name).to_numpy() for name in X.columns})
