"""The report's figures (matplotlib, Agg), the top layer below ``report``: over groups of runs (``groups``), per
run (``run``), compression (``compress``) and FedLAMA (``fedlama``)."""
