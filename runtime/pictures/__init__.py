"""Pictures: plots of a run, the HTML report, the runs table and run comparisons."""
