"""opshelf-core: the contracts every opshelf package shares.

Imports here stay light (no dflow): local steps import this package and every
millisecond of import time is paid once per step.
"""

__version__ = "0.1.0"
