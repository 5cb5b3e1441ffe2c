"""``modelset.check_method``: the method author's check of the contract (``metrics.checks``), reached
only when called, as the command line reaches the scoring side, so that importing modelset stays free
of it."""


def check_method(cls, *args, **kwargs) -> list[str]:
    """Problems of the method class ``cls`` under the contract, one line each; empty if it passes.
    Arguments as for ``metrics.checks.check_method``."""
    from metrics.checks import check_method as check

    return check(cls, *args, **kwargs)
