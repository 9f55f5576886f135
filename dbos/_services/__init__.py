"""Background services: the only code that starts threads.

Every periodic loop is a :class:`~dbos._services.base.Service`; the workflow
pool runs workflow bodies. ``DBOS.launch()`` lists them; ``DBOS.destroy()``
stops and joins them.
"""
