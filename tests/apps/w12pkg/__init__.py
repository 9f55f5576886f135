"""A package of ``dbos-worker`` apps, for the dotted and ``module:attr`` forms of APP
(tests/test_worker.py; the worker runs with tests/apps as its working directory)."""
