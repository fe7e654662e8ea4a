"""opshelf-md: exploration with LAMMPS and ASE molecular dynamics, model deviation of
ML-potential ensembles, trajectories to frames, and selection of candidate frames."""
