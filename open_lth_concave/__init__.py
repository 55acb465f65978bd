"""open_lth_concave: lottery tickets by IMP and by concave regularization of a relaxed binary mask."""
__version__ = "0.1.0"
