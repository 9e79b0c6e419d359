"""The sidecar: reads the scheduler's database read-only and serves what it found. It never
imports the kit or the command line."""
