"""Process-level concerns of an SPMD run: agreeing on set-up errors and aborting on later ones (launch), signals
and stop requests (signals), the watchdog that turns a hang into an abort naming what was awaited (watchdog),
usage errors (errors). Nothing here knows a model, a dataset or a strategy."""
