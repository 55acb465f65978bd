_PLATFORM = None


def get_platform():
    return _PLATFORM
