"""A loopback server speaking the Eachlabs prediction protocol, for tests, demos and load tests.

Entry points:
- `serve(host, port, **options)`: blocking; `options` are `FakeApiConfig` fields;
- `running_fake_api(...)`: context manager, runs it in-process on a free port, yields
  `FakeApiServer(base_url, state)` with `.stats()`;
- `fake_api_process(...)`: context manager, runs it as a child process, yields `.base_url`/`.stats()`;
- `main(argv)`: the `flux-depth fake-api` command line.
"""

from flux_depth_assets.fakeapi.runner import (
    FakeApiProcess,
    FakeApiServer,
    build_parser,
    fake_api_process,
    main,
    running_fake_api,
    serve,
)
from flux_depth_assets.fakeapi.server import FakeEachlabs, build_app
from flux_depth_assets.fakeapi.state import FakeApiConfig

__all__ = [
    "FakeApiConfig",
    "FakeApiProcess",
    "FakeApiServer",
    "FakeEachlabs",
    "build_app",
    "build_parser",
    "fake_api_process",
    "main",
    "running_fake_api",
    "serve",
]
