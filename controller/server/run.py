"""`qforge server`: uvicorn serving the app; metrics on a port of their own."""

from __future__ import annotations

import logging
import os

from qforge.settings import Settings

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "QFORGE_ADMIN_TOKEN_FILE"
WARM_TABLES = 4  # the page's campaigns read ahead at start (qforge.service.table.warm)


def run_server(settings: Settings, *, host: str, port: int, trust_proxy_header: bool) -> int:
    import uvicorn
    from prometheus_client import start_http_server

    from qforge.auth.roles import Role
    from qforge.auth.tokens import TokenStore, read_token_file
    from qforge.logs import setup_logging
    from qforge.server.app import Options, create_app

    setup_logging(settings.log_dir, component="server", fmt=settings.log_format)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    admin_file = os.environ.get(ADMIN_TOKEN_FILE)
    if admin_file:
        secret = read_token_file(admin_file)
        TokenStore(settings.jobs_dir).ensure_token("admin", Role.admin, secret)
        log.info("The admin token from %s is registered as token 'admin'", admin_file)
    app = create_app(settings, Options(trust_proxy_header=trust_proxy_header,
                                       warm_tables=WARM_TABLES))
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port, settings.metrics_address,
                          registry=app.state.metrics.registry)
        log.info("Metrics at http://%s:%d/metrics", settings.metrics_address,
                 settings.metrics_port)
    log.info("Starting Server on http://%s:%d (store %s)", host, port, settings.jobs_dir)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                proxy_headers=trust_proxy_header, timeout_graceful_shutdown=5)
    return 0
