"""hpgsim.fit (issue 4/5): see docs/."""
