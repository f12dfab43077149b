"""S.M.A.R.T. disk health through smartctl --json: health, attributes, defects, error and self-test logs."""
