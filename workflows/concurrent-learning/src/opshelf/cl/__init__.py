"""opshelf-cl: DPGEN2-style concurrent learning (train -> explore -> select -> label).

Pure parts: `opshelf.cl.config` (the strict config), `opshelf.cl.scheduler` (stages,
convergence, loop state), `opshelf.cl.inputs`; dflow: `opshelf.cl.ops`, `opshelf.cl.flow`;
the CLI plugin: `opshelf.cl.plugin:ClWorkflow` (entry point `cl`).
"""

__version__ = "0.1.0"
