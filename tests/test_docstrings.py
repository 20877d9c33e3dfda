"""The numpydoc examples of every module run and print what they show.

(The embedding module's examples load the real model and run in test_embedding, the
io module's in test_io.)
"""

import doctest
import importlib

import pytest

MODULES = ["sklearn_lore.estimator", "sklearn_lore.model_selection", "sklearn_lore.datasets",
           "sklearn_lore.inference"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0
