"""opshelf-lameval: OpenLAM/LAMBench-style evaluation of large atomic models.

Pure functions (no dflow): `metrics` (shift correction, RMSE/MAE, LAMBench scores, Delta),
`predict` (batched and per-structure evaluation), `tasks` (accuracy, EOS Delta, properties,
MD stability, efficiency), `leaderboard` and `report`. The dflow workflow: `workflow`.
"""

__version__ = "0.1.0"
