"""opshelf-alloy: the alloy-properties reference workflow (`opshelf run alloy CONFIG`).

Relax every structure with every interaction (an EAM potential, a DeePMD model, a large
atomic model, DFT), compute the requested properties of each relaxed structure with
opshelf-props, and compare the interactions side by side in results.json and one HTML
report. `opshelf alloy import-apex` turns APEX parameter files into a config.
"""

__version__ = "0.1.0"
