"""hpgsim.sensitivity (issue 4/5): see docs/."""
