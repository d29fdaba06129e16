"""The test bed's errors that a command line reports as one message (VMs that cannot be built, booted or fed)."""

from ..image.base import ImageBuildError
from .launcher import LauncherError
from ..image.mirror import MirrorNotFound
from .mirror_cache import MirrorCacheError
from .python_index import PythonIndexError

TESTBED_ERRORS = (LauncherError, ImageBuildError, MirrorNotFound, MirrorCacheError, PythonIndexError)
