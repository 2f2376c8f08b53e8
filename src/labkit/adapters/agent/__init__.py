"""The grader agent's client side: an SSH session to ``python -m labkit.agent`` and the
:class:`~labkit.adapters.providers.base.GraderGround` over it (every provider reuses it)."""
