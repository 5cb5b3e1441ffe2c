"""Features computed once per view.

The scorer asks a learned method for both ``embed(view)`` and ``predict_scores(view)`` of the same
test view, and both read the same features of its models. ``per_view`` keeps a feature function's
result for as long as the view object lives, outside the method, so that the method itself stays
unchanged. A view is read-only: a changed model is a new view.
"""

from __future__ import annotations

import functools
import weakref

_FEATURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # view -> {(function, args): result}


def per_view(fn):
    """``fn(view, *args, **kwargs)`` computed once per view object and arguments."""

    @functools.wraps(fn)
    def cached(view, *args, **kwargs):
        store = _FEATURES.setdefault(view, {})
        key = (fn, args, tuple(sorted(kwargs.items())))
        if key not in store:
            store[key] = fn(view, *args, **kwargs)
        return store[key]

    return cached
