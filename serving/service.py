"""Starting the LLM and embedding services on Ray Serve."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from serving.clients import ServeEmbedder, ServeLLM
from serving.config import EngineConfig
from serving.deployments import EMBEDDING_APP, LLM_APP, embedding_app, llm_app
from serving.llm import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceOptions:
    """Where and how the services listen."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    embeddings: bool = True
    llm_route: str = "/"
    quiet: bool = False  # Serve logs warnings only, no line per request (simulation runs)
    # an HTTP proxy (``host``:``port``); without one (simulation runs: the hosts call the
    # services through handles) Serve opens no HTTP port at all
    http: bool = True
    # custom resources each replica asks for (cluster.placement: the nodes that take them)
    llm_resources: Mapping[str, float] = field(default_factory=dict)
    embedding_resources: Mapping[str, float] = field(default_factory=dict)


def start_services(
    config: EngineConfig, options: ServiceOptions | None = None, engine: Engine | None = None
) -> tuple[ServeLLM, ServeEmbedder | None]:
    """Starts the services on the Ray cluster this process is connected to.

    Ray must already be initialised (``cluster.ray_runtime.init_ray``). The HTTP proxy binds
    ``options.host`` (127.0.0.1 unless told otherwise); with ``options.http`` False there is
    none (Serve's ``proxy_location="Disabled"``) and the services answer through handles only.

    Returns:
        Clients of the LLM service and, when started, of the embedding service.
    """
    from ray import serve

    options = options or ServiceOptions()
    logging_config = None
    if options.quiet:
        from ray.serve.schema import LoggingConfig

        logging_config = LoggingConfig(log_level="WARNING", enable_access_log=False)
    if options.http:
        serve.start(
            http_options={"host": options.host, "port": options.port},
            logging_config=logging_config,
        )
    else:
        serve.start(proxy_location="Disabled", logging_config=logging_config)
    log.info("starting the LLM service (%s, %s)", config.engine, config.model)
    serve.run(
        llm_app(
            config,
            api_key=options.api_key,
            engine=engine,
            quiet=options.quiet,
            resources=options.llm_resources,
        ),
        name=LLM_APP,
        route_prefix=options.llm_route,
    )
    embedder = None
    if options.embeddings:
        log.info("starting the embedding service")
        app = embedding_app(quiet=options.quiet, resources=options.embedding_resources)
        serve.run(app, name=EMBEDDING_APP, route_prefix=None)
        embedder = ServeEmbedder()
    return ServeLLM(), embedder
