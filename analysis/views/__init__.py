"""The report's tables, on top of ``analysis.models`` and ``analysis.stats``: the table type (``tables``), the core
tables (``core``), one module per topic (``compress``, ``fedlama``, ``fl``, ``model``, ``overlap``), sweeps
(``pivot``), two runs compared (``diff``) and the Chrome trace export (``trace``)."""
