"""The protocol shared by backend and worker: job schema, key layout, broker and store helpers.

Both images install this package; nothing here is copied into `services/backend` or
`services/worker`.
"""
