"""Statistics over runs, on top of ``analysis.data``: each metric defined once (``metrics``), accuracy and
time-to-accuracy (``accuracy``), which runs pool as repeats (``groups``), confidence intervals (``intervals``)."""
