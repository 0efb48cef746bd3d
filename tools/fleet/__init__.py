"""Fleet generator: a GPU fleet spec (FLEET.yaml) in, a docker-compose deployment out.

Modules, in the order a render runs through them: `load` (YAML, then the schema in `spec` and
`fields`), `checks` (rules across fields and models), `inventory` and `placement` (the host's
GPUs, `gpus: auto`), `estimate` (will weights + KV cache fit), `build` (all of the above, every
problem at once), `plan` (every value the templates print), `credentials` (secrets.env),
`envfile` (env-file quoting), `render` (templates to files), `docs` (the spec reference), `cli`.
"""

from tools.fleet.build import Fleet, build
from tools.fleet.problems import FleetError, Problem
from tools.fleet.render import render

__all__ = ["Fleet", "FleetError", "Problem", "build", "render"]
