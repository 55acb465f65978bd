"""Reports over finished runs: they read result folders and draw them, and run nothing. The side-by-side
comparison of pruning strategies (compare.py; `open_lth compare` runs the lotteries in jobs/compare.py), a
run folder's contents (summary.py, `open_lth summary`), and the paper grid's top-level summary (`paper_summary`)."""
