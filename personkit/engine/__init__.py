"""Training and evaluating one run: config -> datasets, samplers and trainer (``build``,
``datasets``), starting a run in a run directory (``launch``, ``rundir``), the training loop
(``trainer``), evaluation with the official protocols (``evaluate``, ``periodic_eval``), DDP
helpers (``distributed``), learning-rate schedules, run logs and pre-flight checks."""
