"""Data access, the bottom layer: the results file's names and numbering (``schema``), lazy reading (``load``), the
facts a run recorded about its strategy (``facts``), and the same data as pandas (``frame``) or xarray (``tree``)."""
