"""The modules both halves use (the sidecar and the scheduler-side kit), importing neither:
table layouts and run statuses, database URLs and their redaction, backup file naming, the
version."""
