"""AdaptFT-Bench (issue 7): stage protocol, baselines, the agent run and its report."""
