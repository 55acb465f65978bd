"""Reports over finished lottery runs: side-by-side comparison of pruning strategies (`open_lth compare`),
a run folder's contents (`open_lth summary`), and the paper grid's top-level summary (`paper_summary`)."""
