"""Learning curves: which subsets (plan), training and scoring each point (run), curve.json/md/png (report)."""
