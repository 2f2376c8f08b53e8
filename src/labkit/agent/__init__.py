"""The grader agent: ``python -I -m labkit.agent --instance NAME`` runs registered probes at
the places of one instance and answers JSON lines (see :mod:`labkit.agent.server`)."""
