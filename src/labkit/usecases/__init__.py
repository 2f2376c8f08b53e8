"""Use cases: what a trainer, a candidate or an assessor asks labkit to do."""
