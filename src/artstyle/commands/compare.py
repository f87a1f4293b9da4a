"""`artstyle compare` (not implemented yet)."""

from ..errors import ArtstyleError


def register(sub):
    p = sub.add_parser("compare", help="(not implemented yet)")
    p.set_defaults(func=_run)


def _run(args):
    raise ArtstyleError("'artstyle compare' is not implemented yet")
