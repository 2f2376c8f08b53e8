"""Built-in check modules. Each module exposes ``GRADERS``: grader objects with a ``name``,
an I/O half ``collect(ctx, args)`` and a pure half ``judge(evidence, args, plan)``."""
