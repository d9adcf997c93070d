"""Pages of one workspace under /admin/w/<slug>/: the portfolio, tags, baselines and drift, findings, bulk runs, alerts."""
