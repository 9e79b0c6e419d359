"""`/metrics`: the metric table, its families and samples, the collector, the per-job
encoded store and the rendered bodies."""
