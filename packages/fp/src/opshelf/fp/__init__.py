"""opshelf-fp: first-principles labelling engines (CP2K, Quantum ESPRESSO pw.x, VASP,
ABACUS, Gaussian) behind opshelf-core's engine protocol, and `label_frames`, a plain-Python
loop that labels frames task by task."""

from opshelf.fp.label import LabelFailure, label_frames

__all__ = ["LabelFailure", "label_frames"]
