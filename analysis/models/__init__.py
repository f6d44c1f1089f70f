"""Cost models, on top of ``analysis.stats``: alpha-beta communication (``costmodel``), compression (``compress``),
overlap (``overlap``), and a run's step predicted from its measured compute and network (``prediction``)."""
