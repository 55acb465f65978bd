import argparse


def maybe_get_arg(arg_name, positional=False, position=0, boolean_arg=False):
    """The value of one flag (or positional) from sys.argv before the full parser exists, or None."""
    parser = argparse.ArgumentParser(add_help=False)
    for i in range(position if positional else 0):
        parser.add_argument(f'skip{i}')
    name = arg_name if positional else '--' + arg_name
    if boolean_arg:
        parser.add_argument(name, action='store_true')
    else:
        parser.add_argument(name, type=str, default=None)
    try:
        known, _ = parser.parse_known_args()
    except SystemExit:
        return None
    return getattr(known, arg_name, None)
