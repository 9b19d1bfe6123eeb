"""Figures and reports: PCA/t-SNE maps, blur calibration, the run report, checks on real spectra."""
