"""hpgsim.trial (issue 4/5): see docs/."""
