"""hpgsim.interop (issue 4/5): see docs/."""
