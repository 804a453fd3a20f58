"""`model-manager models ...`: a REST client of a running server (tables, `--json`, live progress of loads). It
imports nothing of the server: it could be shipped alone."""
