"""The load test's parts: settings, prompt set, target discovery, users, metrics and reports.

`loadtests/locustfile.py` wires them into Locust; `loadtests/sweep.py` runs Locust at several
user counts. Locust puts the locustfile's folder on `sys.path`, so this package is imported as
`llmload` (the tests do the same).
"""
